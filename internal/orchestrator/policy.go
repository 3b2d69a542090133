package orchestrator

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// policyTTL is how long a namespace's policy is used before it is read
// again.
const policyTTL = 5 * time.Second

// policyCache keeps namespaces' policies for policyTTL. Its lock may be
// taken while holding Orchestrator.mu, never the other way round.
type policyCache struct {
	mu sync.Mutex
	m  map[string]cachedPolicy
}

type cachedPolicy struct {
	p  job.NamespacePolicy
	at time.Time
}

// policy returns ns's policy, reading it from the PolicySource when the
// cached one is stale. It does I/O: never call it holding o.mu.
func (o *Orchestrator) policy(ctx context.Context, ns string) job.NamespacePolicy {
	c := &o.policies
	c.mu.Lock()
	cp, ok := c.m[ns]
	c.mu.Unlock()
	if ok && time.Since(cp.at) < policyTTL || o.cfg.Policies == nil {
		return cp.p
	}
	p, err := o.cfg.Policies.NamespacePolicy(ctx, ns)
	if err != nil {
		o.log.Warn("read namespace policy", "namespace", ns, "err", err)
		return cp.p
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]cachedPolicy)
	}
	c.m[ns] = cachedPolicy{p: p, at: time.Now()}
	c.mu.Unlock()
	return p
}

// policyKnownLocked reports whether ns's policy was ever read (or there is
// no PolicySource, and every namespace has the zero policy). Until it is,
// the namespace's jobs stay off untrusted workers: a policy that could not
// be read may require trusted workers.
func (o *Orchestrator) policyKnownLocked(ns string) bool {
	if o.cfg.Policies == nil {
		return true
	}
	c := &o.policies
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[ns]
	return ok
}

// cachedPolicyLocked returns the last policy read for ns, without I/O.
func (o *Orchestrator) cachedPolicyLocked(ns string) job.NamespacePolicy {
	c := &o.policies
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[ns].p
}

// quotasLocked returns ns's quotas with the defaults filled in.
func (o *Orchestrator) quotasLocked(ns string) job.Quotas {
	return o.cachedPolicyLocked(ns).Quotas.Merge(o.cfg.DefaultQuotas)
}

// runningLocked is how many jobs of namespace ns run now.
func (o *Orchestrator) runningLocked(ns string) int { return o.nsRunning[ns] }

// releaseLocked takes e off its worker, if it has one.
func (o *Orchestrator) releaseLocked(e *entry) {
	if e.worker != nil {
		o.nsRunning[e.job.Namespace]--
		e.worker = nil
	}
}

// eligibleLocked reports whether w may be given e now, and when it may
// not, whether that holds for every job of e's lane.
func (o *Orchestrator) eligibleLocked(w *worker, e *entry) (ok, wholeLane bool) {
	if o.overRunningQuotaLocked(e.job.Namespace) || o.laneRefusalLocked(w, e) != "" {
		return false, true
	}
	if e.excluded(w) || (e.avoid[w.id] && o.othersCanRunLocked(w, e)) {
		return false, false
	}
	return true, false
}

// othersCanRunLocked reports whether a connected worker other than w, and
// not avoided by e, may run e.
func (o *Orchestrator) othersCanRunLocked(w *worker, e *entry) bool {
	for _, p := range o.index.pools {
		for other := range p.members {
			if other == w || other.gone || e.avoid[other.id] {
				continue
			}
			if o.refusalLocked(other, e) == "" {
				return true
			}
			if !other.banned && !e.excluded(other) {
				// The pool refuses e's lane: all its members alike.
				break
			}
		}
	}
	return false
}

func (o *Orchestrator) overRunningQuotaLocked(ns string) bool {
	q := o.quotasLocked(ns)
	return q.RunningJobs > 0 && o.nsRunning[ns] >= q.RunningJobs
}

// refusalLocked says why w may not run e ("" when it may), leaving aside
// how busy w and e's namespace are.
func (o *Orchestrator) refusalLocked(w *worker, e *entry) string {
	if reason := o.laneRefusalLocked(w, e); reason != "" {
		return reason
	}
	if e.excluded(w) {
		return "already ran a replica of this job, or its owner or address did (replicas go to distinct identities)"
	}
	return ""
}

// laneRefusalLocked is refusalLocked for what every job of e's lane
// shares: the runtime, namespace and requirements against w's
// capabilities, trust and standing.
func (o *Orchestrator) laneRefusalLocked(w *worker, e *entry) string {
	if reason := o.poolRefusalLocked(&w.caps, w.trusted, e); reason != "" {
		return reason
	}
	if why := o.banLocked(w); why != "" {
		return "is banned: " + why
	}
	return ""
}

// poolRefusalLocked is laneRefusalLocked for what a pool's workers share:
// capabilities caps and trust, leaving aside bans.
func (o *Orchestrator) poolRefusalLocked(caps *job.Capabilities, trusted bool, e *entry) string {
	// Checked at submission too; here, a policy changed since holds.
	if why := o.cachedPolicyLocked(e.job.Namespace).EgressRefusal(e.job.Spec.EgressOf()); why != "" {
		return "may not be given it: " + why
	}
	if ok, reason := caps.Accepts(e.job); !ok {
		return reason
	}
	if !trusted {
		if job.NeedsTrust(e.job.Type) {
			return fmt.Sprintf("is not trusted; %s jobs run only on workers that joined with a join token", e.job.Type)
		}
		if e.trustedOnly {
			return "is not trusted; the function's deployment does not allow anonymous workers (anonymous_workers)"
		}
		if o.cachedPolicyLocked(e.job.Namespace).RequireTrustedWorkers {
			return fmt.Sprintf("is not trusted; namespace %s requires trusted workers", e.job.Namespace)
		}
		if !o.policyKnownLocked(e.job.Namespace) {
			return fmt.Sprintf("is not trusted, and namespace %s's policy could not be read yet (it may require trusted workers)", e.job.Namespace)
		}
	}
	return ""
}

// admitQuota applies ns's rate quota to a new job or invocation and, to a
// job (pending: it is stored and queued), the pending and storage quotas.
func (o *Orchestrator) admitQuota(ctx context.Context, ns string, pending bool) error {
	q := o.policy(ctx, ns).Quotas.Merge(o.cfg.DefaultQuotas)
	if q.SubmitsPerSecond > 0 && !o.buckets.allow(ns, q.SubmitsPerSecond, time.Now()) {
		return job.Errorf(job.CodeTooMany, "namespace %s is over its rate of %g submissions per second; retry shortly", ns, q.SubmitsPerSecond)
	}
	if !pending {
		return nil
	}
	if q.JobStorageMB > 0 {
		if used := o.storedBytes(ctx, ns); used >= int64(q.JobStorageMB)<<20 {
			return job.Errorf(job.CodeTooMany, "namespace %s stores %d MiB of jobs and results, over its quota of %d MiB; retry once some have expired (jobs are kept %s after they end)",
				ns, used>>20, q.JobStorageMB, o.cfg.Retention.Period)
		}
	}
	if q.PendingJobs <= 0 {
		return nil
	}
	o.mu.Lock()
	n := o.nsPending[ns]
	o.mu.Unlock()
	if n >= q.PendingJobs {
		return job.Errorf(job.CodeTooMany, "namespace %s has %d jobs pending, its quota; retry when some have run", ns, n)
	}
	return nil
}

// usageTTL is how long a namespace's stored bytes are used before they are
// read again: the storage quota may be passed by what a second's worth of
// jobs store.
const usageTTL = time.Second

// usageCache keeps namespaces' stored bytes for usageTTL.
type usageCache struct {
	mu sync.Mutex
	m  map[string]cachedUsage
}

type cachedUsage struct {
	bytes int64
	at    time.Time
}

// storedBytes returns what ns's stored jobs take, read from the store at
// most every usageTTL. A store that cannot answer counts as 0 (the job's
// own write would fail then). It does I/O: never call it holding o.mu.
func (o *Orchestrator) storedBytes(ctx context.Context, ns string) int64 {
	c := &o.usage
	c.mu.Lock()
	cu, ok := c.m[ns]
	c.mu.Unlock()
	if ok && time.Since(cu.at) < usageTTL {
		return cu.bytes
	}
	n, err := o.store.JobBytes(ctx, ns)
	if err != nil {
		o.log.Warn("read namespace storage", "namespace", ns, "err", err)
		return cu.bytes
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]cachedUsage)
	}
	c.m[ns] = cachedUsage{bytes: n, at: time.Now()}
	c.mu.Unlock()
	return n
}

// rateLimiter is a token bucket per namespace, with a burst of twice the
// rate (at least 1).
type rateLimiter struct {
	mu sync.Mutex
	m  map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func (r *rateLimiter) allow(ns string, rate float64, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	burst := math.Max(1, 2*rate)
	if r.m == nil {
		r.m = make(map[string]*bucket)
	}
	b := r.m[ns]
	if b == nil {
		b = &bucket{tokens: burst, last: now}
		r.m[ns] = b
	}
	b.tokens = math.Min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Quotas returns namespace ns's quotas: its policy's, with the platform's
// defaults for what the policy leaves zero.
func (o *Orchestrator) Quotas(ctx context.Context, ns string) job.Quotas {
	return o.policy(ctx, ns).Quotas.Merge(o.cfg.DefaultQuotas)
}
