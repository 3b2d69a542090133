package orchestrator

import "container/heap"

// leaseHeap orders the leases workers hold by deadline, so that finding
// the expired ones costs what expired, not a look at every lease. A lease
// is in it from addLeaseLocked to endLeaseLocked; a change of its deadline
// is followed by fix. Guarded by Orchestrator.mu.
type leaseHeap struct{ h leaseSlice }

type leaseSlice []*lease

func (s leaseSlice) Len() int           { return len(s) }
func (s leaseSlice) Less(i, j int) bool { return s[i].deadline.Before(s[j].deadline) }
func (s leaseSlice) Swap(i, j int) {
	s[i], s[j] = s[j], s[i]
	s[i].index, s[j].index = i, j
}
func (s *leaseSlice) Push(x any) {
	l := x.(*lease)
	l.index = len(*s)
	*s = append(*s, l)
}
func (s *leaseSlice) Pop() any {
	old := *s
	l := old[len(old)-1]
	old[len(old)-1] = nil
	*s = old[:len(old)-1]
	l.index = -1
	return l
}

func (h *leaseHeap) push(l *lease) { heap.Push(&h.h, l) }

// remove takes l out, if it is in.
func (h *leaseHeap) remove(l *lease) {
	if l.index >= 0 && l.index < len(h.h) && h.h[l.index] == l {
		heap.Remove(&h.h, l.index)
	}
}

// fix restores the order after l's deadline changed.
func (h *leaseHeap) fix(l *lease) {
	if l.index >= 0 && l.index < len(h.h) && h.h[l.index] == l {
		heap.Fix(&h.h, l.index)
	}
}

// peek returns the lease with the earliest deadline, nil when there is none.
func (h *leaseHeap) peek() *lease {
	if len(h.h) == 0 {
		return nil
	}
	return h.h[0]
}
