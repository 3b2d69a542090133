package orchestrator

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"sort"

	"github.com/zerverless/zerverless/internal/job"
)

// poolLaneScan bounds the (pool, queue lane) pairs one Pools call looks
// at to count pending jobs, so that many pools and many lanes cannot hold
// the orchestrator's lock long; the pools past it say their count is cut
// short.
const poolLaneScan = 100_000

// Pools describes the dispatch pools (see workerIndex), largest first.
// With namespace set (a namespace token's view) it keeps the pools whose
// workers accept that namespace's jobs and counts only its pending jobs;
// the caller scopes the capabilities shown. It does not block on the
// network.
func (o *Orchestrator) Pools(namespace string) []job.PoolInfo {
	o.mu.Lock()
	defer o.mu.Unlock()
	budget := poolLaneScan
	out := make([]job.PoolInfo, 0, len(o.index.pools))
	for _, p := range o.index.pools {
		if len(p.members) == 0 {
			continue
		}
		if namespace != "" && len(p.caps.Namespaces) > 0 && !slices.Contains(p.caps.Namespaces, namespace) {
			continue
		}
		mac := hmac.New(sha256.New, o.index.idKey)
		mac.Write([]byte(p.key))
		info := job.PoolInfo{ID: hex.EncodeToString(mac.Sum(nil)[:6]), Capabilities: p.caps, Trusted: p.trusted,
			Workers: len(p.members), Banned: p.banned, WorkerIDs: []string{}}
		info.Capabilities.Concurrency = 0
		info.Capabilities.Version = ""
		if d := p.caps.Docker; d != nil {
			// What differs between members is not the pool's.
			dc := *d
			dc.BuildCache, dc.Pool = nil, nil
			info.Capabilities.Docker = &dc
		}
		for w := range p.members {
			info.Slots += w.caps.Concurrency
			info.Running += len(w.leases)
			if w.readyElem != nil {
				info.Ready++
			}
			info.WorkerIDs = append(info.WorkerIDs, w.id)
		}
		sort.Strings(info.WorkerIDs)
		if len(info.WorkerIDs) > job.MaxPoolWorkerIDs {
			info.WorkerIDs = info.WorkerIDs[:job.MaxPoolWorkerIDs]
		}
		info.Pending, info.PendingCounted = o.poolPendingLocked(p, namespace, &budget)
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Workers != out[j].Workers {
			return out[i].Workers > out[j].Workers
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// poolPendingLocked counts the queued jobs p's workers accept (of
// namespace only, when set): those of the lanes whose first job p
// accepts. It looks at most *budget lanes, taking them from it; counted
// is false when it ran out.
func (o *Orchestrator) poolPendingLocked(p *pool, namespace string, budget *int) (n int, counted bool) {
	for _, t := range p.caps.Runtimes {
		for k, l := range o.queue.byType[t] {
			if namespace != "" && k.namespace != namespace {
				continue
			}
			if len(p.caps.Namespaces) > 0 && !slices.Contains(p.caps.Namespaces, k.namespace) {
				continue
			}
			if *budget <= 0 {
				return n, false
			}
			*budget--
			if l.Len() == 0 {
				continue
			}
			if o.poolRefusalLocked(&p.caps, p.trusted, l.Front().Value.(*entry)) == "" {
				n += l.Len()
			}
		}
	}
	return n, true
}
