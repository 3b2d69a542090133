package orchestrator

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net"
	"net/netip"

	"github.com/zerverless/zerverless/internal/job"
)

// Authenticator checks a token's secret. It returns an error with code
// unauthorized for a secret it does not know or that was revoked.
type Authenticator interface {
	Authenticate(ctx context.Context, secret string) (job.Principal, error)
}

// PolicySource gives the operator's policy for a namespace; a namespace
// nobody set a policy for gets the zero policy.
type PolicySource interface {
	NamespacePolicy(ctx context.Context, namespace string) (job.NamespacePolicy, error)
}

// identity is who a connecting worker is.
type identity struct {
	trusted bool
	// owner names the join token; "" for anonymous volunteers and the
	// embedded workers. Replicas of one job go to distinct identities
	// (reputationKey), and always to distinct workers.
	owner string
	// secret is the join token presented, kept to check it again while
	// the session lasts (recheckTokens); "" for anonymous volunteers and
	// the embedded workers.
	secret string
}

// identify checks the token a worker presented at registration.
func (o *Orchestrator) identify(ctx context.Context, token string) (identity, error) {
	if token == "" {
		if !o.cfg.OpenVolunteering {
			return identity{}, fmt.Errorf("this orchestrator accepts only workers with a join token (zerverless worker --join-token); anonymous volunteering is off")
		}
		return identity{}, nil
	}
	if s := o.cfg.LocalWorkerSecret; s != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s)) == 1 {
		// The orchestrator's own workers: trusted, each its own owner.
		return identity{trusted: true}, nil
	}
	if o.cfg.Auth == nil {
		return identity{}, fmt.Errorf("invalid join token")
	}
	p, err := o.cfg.Auth.Authenticate(ctx, token)
	if err != nil {
		return identity{}, fmt.Errorf("invalid join token")
	}
	if p.Kind != job.TokenWorker && p.Kind != job.TokenAdmin {
		return identity{}, fmt.Errorf("a %s token is not a join token", p.Kind)
	}
	owner := p.TokenID
	if p.Name != "" {
		owner = p.Name + " (" + p.TokenID + ")"
	}
	return identity{trusted: true, owner: owner, secret: token}, nil
}

// anonymousIPv6Prefix is the IPv6 prefix an anonymous volunteer is known
// by: a /56, the smallest block one subscriber is usually delegated (a
// household gets a /56 or a /48, a LAN within it a /64). By its /64 one
// subscriber would be 256 identities or more: 256 fresh records, 256
// replicas' votes.
const anonymousIPv6Prefix = 56

// remoteIdentity is what an anonymous volunteer is known by: the address it
// connects from, an IPv6 address by its /56 (anonymousIPv6Prefix), so that
// a new session does not start with a clean slate.
func remoteIdentity(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(anonymousIPv6Prefix)
		return p.String()
	}
	return ip.String()
}

// recheckTokens authenticates again the join token of every connected
// worker that presented one, and ends the sessions whose token is no
// longer valid (revoked, or no longer a join token): their jobs go back to
// the queue without losing an attempt. A store error keeps the session;
// the next check decides.
func (o *Orchestrator) recheckTokens(ctx context.Context) {
	if o.cfg.Auth == nil {
		return
	}
	o.mu.Lock()
	ws := make([]*worker, 0, len(o.workers))
	for _, w := range o.workers {
		if w.secret != "" {
			ws = append(ws, w)
		}
	}
	o.mu.Unlock()
	// Sessions that presented the same token are checked with one
	// look-up: thousands of workers may join with one token.
	type check struct {
		p   job.Principal
		err error
	}
	checked := make(map[string]check)
	for _, w := range ws {
		c, ok := checked[w.secret]
		if !ok {
			c.p, c.err = o.cfg.Auth.Authenticate(ctx, w.secret)
			checked[w.secret] = c
		}
		p, err := c.p, c.err
		why := ""
		switch {
		case job.ErrorCode(err) == job.CodeUnauthorized:
			why = "its join token is no longer valid: " + err.Error()
		case err != nil:
			o.log.Warn("recheck join token", "worker_id", w.id, "err", err)
			continue
		case p.Kind != job.TokenWorker && p.Kind != job.TokenAdmin:
			why = fmt.Sprintf("its token is now a %s token, not a join token", p.Kind)
		default:
			continue
		}
		o.log.Warn("worker session ended", "worker_id", w.id, "owner", w.owner, "reason", why)
		o.dropWorker(w, fmt.Sprintf("worker %s was disconnected: %s", w.id, why), false)
		go w.conn.Close("join token revoked")
	}
}

// reputationKey is what strikes, lost leases and bans are counted against:
// the join token where known; for an anonymous volunteer the address it
// connects from (remoteIdentity), so that reconnecting does not reset it;
// for the orchestrator's own embedded workers the session.
func (w *worker) reputationKey() string {
	switch {
	case w.key != "":
		return w.key
	case w.owner != "":
		return "owner:" + w.owner
	case !w.trusted:
		return "remote:" + remoteIdentity(w.remote)
	}
	return "worker:" + w.id
}

// standing is what an identity (a reputation key) has done with the leases
// it was given. Guarded by Orchestrator.mu.
type standing struct {
	// results are the results it returned under a current lease.
	results int
	// lost are the leases it lost: it disconnected holding them, its
	// token was not revoked, or it let them expire.
	lost int
	// drops are the lost leases not charged to their jobs, because the
	// identity was not in good standing when it lost them.
	drops int
}

// good reports whether an identity is in good standing: it has returned
// more results than it has lost leases. A lease lost by an identity in good
// standing may be the job's own doing and costs the job an attempt.
func (s standing) good() bool { return s.results > s.lost }

func (o *Orchestrator) standingLocked(key string) *standing {
	s := o.standings[key]
	if s == nil {
		s = &standing{}
		o.standings[key] = s
	}
	return s
}

// banLocked says why w may be given no more jobs, "" when it may.
func (o *Orchestrator) banLocked(w *worker) string {
	k := w.reputationKey()
	if o.strikes[k] >= o.cfg.MaxStrikes {
		return "its results lost quorum too often"
	}
	if s := o.standings[k]; s != nil && s.drops >= o.cfg.MaxDrops {
		return fmt.Sprintf("it lost %d leases without returning results", s.drops)
	}
	return ""
}

// bannedLocked reports whether w may be given no more jobs: its identity
// lost quorum MaxStrikes times, or lost MaxDrops leases while not in good
// standing.
func (o *Orchestrator) bannedLocked(w *worker) bool { return o.banLocked(w) != "" }

// resultLocked records that w returned a result under a current lease.
func (o *Orchestrator) resultLocked(w *worker) {
	o.standingLocked(w.reputationKey()).results++
	o.standingChangedLocked(w)
}

// loseLeaseLocked handles e, whose current lease on w was lost: w
// disconnected holding it or let it expire. The caller persists e. See
// docs/rationale.md, "Lost leases".
//
//   - On the orchestrator's own embedded workers a loss is always the
//     job's: it costs an attempt (and fails the job when none is left).
//   - Otherwise it costs an attempt only when w's identity is in good
//     standing (it has returned more results than it has lost leases) and,
//     for an untrusted identity, has not cost this job an attempt before:
//     one address charges a job at most once.
//   - A loss by an identity not in good standing costs the job nothing and
//     counts toward banning the identity (MaxDrops).
func (o *Orchestrator) loseLeaseLocked(e *entry, w *worker, why string) {
	if w.trusted && w.owner == "" {
		o.requeueLocked(e, true, why)
		return
	}
	k := w.reputationKey()
	s := o.standingLocked(k)
	defer o.standingChangedLocked(w)
	root := e.rootLocked()
	good := s.good()
	again := !w.trusted && root.chargedBy[k]
	s.lost++
	if good && !again {
		if !w.trusted {
			if root.chargedBy == nil {
				root.chargedBy = make(map[string]bool)
			}
			root.chargedBy[k] = true
		}
		o.requeueLocked(e, true, why)
		return
	}
	o.requeueLocked(e, false, "")
	if again {
		e.job.Reason = fmt.Sprintf("re-queued without losing an attempt: %s, whose address already cost this job an attempt", why)
		return
	}
	s.drops++
	o.log.Warn("lease lost by a worker not in good standing; the job keeps its attempts",
		"job_id", e.job.ID, "worker_id", w.id, "identity", k, "drops", s.drops, "banned", s.drops >= o.cfg.MaxDrops)
	e.job.Reason = fmt.Sprintf("re-queued without losing an attempt: %s, which has lost more leases than it returned results", why)
}

// rejectedLocked records that the untrusted worker w gave e back unrun. It
// never costs the job anything, but it counts in w's identity's record as a
// lost lease does, toward a ban when the identity is not in good standing:
// otherwise a volunteer could take a job, sit on it until just before its
// lease expires, give it back and take it again, holding another tenant's
// job forever at no cost. Trusted workers reject for their own reasons (a
// full slot, an engine down) and answer to the operator.
func (o *Orchestrator) rejectedLocked(e *entry, w *worker) {
	if w.trusted {
		return
	}
	k := w.reputationKey()
	s := o.standingLocked(k)
	defer o.standingChangedLocked(w)
	good := s.good()
	s.lost++
	if good {
		return
	}
	s.drops++
	o.log.Warn("job given back unrun by a worker not in good standing",
		"job_id", e.job.ID, "worker_id", w.id, "identity", k, "drops", s.drops, "banned", s.drops >= o.cfg.MaxDrops)
}

// rootLocked is the job e stands for: its parent for a replica, else e.
func (e *entry) rootLocked() *entry {
	if e.parent != nil {
		return e.parent
	}
	return e
}
