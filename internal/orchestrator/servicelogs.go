package orchestrator

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

// A docker service's log is what its instances write, as their workers
// send it while they run ("service_output", docs/protocol.md), kept in
// memory per service: the newest ServicesConfig.MaxLogBytes, as events of
// whole lines of one instance. Followers read it by sequence number, each
// at its own pace: the log never waits for a follower. One that falls more
// than ServicesConfig.FollowerBytes behind skips ahead and is told what it
// missed (a "dropped" event), so that it holds no more than that.

const (
	// serviceLogEventCost is what one event counts for in the log's
	// bound beyond its text, so that a worker sending a byte a message
	// cannot make the log long.
	serviceLogEventCost = 64
	// maxPartialLine bounds the end of an instance's output held until
	// its line ends; a longer line is logged in parts.
	maxPartialLine = 4 << 10
)

// serviceLog is one service's log. Its fields are guarded by mu, which is
// never held while taking services.mu.
type serviceLog struct {
	limit int

	mu      sync.Mutex
	start   uint64                // Seq of the log's first event
	next    uint64                // Seq of the next event
	events  []job.ServiceLogEvent // oldest first
	cost    int                   // of events, against limit
	partial map[string]string     // by instance id and stream: output until its line ends
	ended   *job.ServiceLogEvent  // the end, once the log has ended
	changed chan struct{}         // closed and replaced at every event
	// following counts the log's followers; guarded by services.followMu.
	following int
}

func newServiceLog(limit int) *serviceLog {
	start := uint64(time.Now().UnixMicro())
	return &serviceLog{limit: limit, start: start, next: start, partial: make(map[string]string), changed: make(chan struct{})}
}

// appendLocked adds ev, numbering it, and drops the oldest events past the
// bound.
func (l *serviceLog) appendLocked(ev job.ServiceLogEvent) {
	ev.Seq = l.next
	l.next++
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	l.events = append(l.events, ev)
	l.cost += len(ev.Text) + serviceLogEventCost
	drop := 0
	for l.cost > l.limit && drop < len(l.events)-1 {
		l.cost -= len(l.events[drop].Text) + serviceLogEventCost
		drop++
	}
	if drop > 0 {
		l.events = append(l.events[:0:0], l.events[drop:]...)
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// output logs text that instance id wrote to stream, after dropped bytes
// its worker left out: its whole lines now, the rest once its line ends.
func (l *serviceLog) output(id string, stream job.LogStream, text string, dropped int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended != nil {
		return
	}
	key := id + " " + string(stream)
	text = l.partial[key] + text
	cut := strings.LastIndexByte(text, '\n') + 1
	if len(text)-cut > maxPartialLine {
		cut = len(text)
	}
	rest := text[cut:]
	if rest == "" {
		delete(l.partial, key)
	} else {
		l.partial[key] = rest
	}
	if cut == 0 && dropped == 0 {
		return
	}
	l.appendLocked(job.ServiceLogEvent{Stream: stream, Instance: id, Text: text[:cut], Dropped: dropped})
}

// flush logs what instance id wrote after its last line ended: it ended.
func (l *serviceLog) flush(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, stream := range []job.LogStream{job.LogStdout, job.LogStderr} {
		key := id + " " + string(stream)
		if rest, ok := l.partial[key]; ok {
			delete(l.partial, key)
			if l.ended == nil {
				l.appendLocked(job.ServiceLogEvent{Stream: stream, Instance: id, Text: rest + "\n"})
			}
		}
	}
}

// end ends the log for why: its followers get the end and return.
func (l *serviceLog) end(why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended != nil {
		return
	}
	l.ended = &job.ServiceLogEvent{Seq: l.next, Stream: job.LogEnd, Time: time.Now(), Reason: why}
	l.next++
	close(l.changed)
	l.changed = make(chan struct{})
}

// text is the log's output as text, oldest first, each line after its
// instance's short id.
func (l *serviceLog) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, ev := range l.events {
		if ev.Stream != job.LogStdout && ev.Stream != job.LogStderr {
			continue
		}
		prefix := "[" + shortID(ev.Instance) + "] "
		for line := range strings.SplitAfterSeq(ev.Text, "\n") {
			if line != "" {
				b.WriteString(prefix)
				b.WriteString(line)
			}
		}
	}
	return b.String()
}

func shortID(id string) string { return id[:min(8, len(id))] }

// since returns the events after seq after, at most max bytes of text
// (the newest), what was skipped before them (a dropped event, when
// something was), the end once every event was read, and the channel
// closed at the next change.
func (l *serviceLog) since(after uint64, maxBytes int) (evs []job.ServiceLogEvent, gap *job.ServiceLogEvent, end *job.ServiceLogEvent, changed <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	changed = l.changed
	if after >= l.next {
		// Not of this log (a clock that went back): all of it.
		after = 0
	}
	i := len(l.events)
	for i > 0 && l.events[i-1].Seq > after {
		i--
	}
	first := i
	// The newest events within maxBytes.
	size := 0
	j := len(l.events)
	for j > first && size+len(l.events[j-1].Text) <= maxBytes {
		size += len(l.events[j-1].Text)
		j--
	}
	if j == len(l.events) && j > first {
		j-- // one event at least, however long
	}
	var skipped job.ServiceLogEvent
	skippedAny := false
	if first < len(l.events) && after > 0 && l.events[first].Seq > after+1 {
		// Events after the follower's last were dropped from the log
		// before it read them (or the log began after it: a restart).
		skippedAny = true
		skipped.Seq = l.events[first].Seq - 1
		if after >= l.start {
			skipped.Missed = int64(l.events[first].Seq - after - 1)
		}
	}
	for _, ev := range l.events[first:j] {
		skippedAny = true
		skipped.Seq = ev.Seq
		skipped.Missed++
		skipped.Dropped += int64(len(ev.Text))
	}
	if skippedAny {
		skipped.Stream = job.LogDropped
		skipped.Time = time.Now()
		gap = &skipped
	}
	evs = append(evs, l.events[j:]...)
	if l.ended != nil && (len(l.events) == 0 || after < l.ended.Seq) {
		e := *l.ended
		end = &e
	}
	return evs, gap, end, changed
}

// logLocked returns sv's log, a new one when it ended and sv is deployed
// again.
func (s *services) logLocked(sv *service) *serviceLog {
	if sv.log == nil || sv.log.isEnded() && !sv.removed {
		sv.log = newServiceLog(s.cfg.MaxLogBytes)
	}
	return sv.log
}

func (l *serviceLog) isEnded() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ended != nil
}

// output applies a worker's service_output: it is logged when it comes
// from the worker that runs the instance now.
func (s *services) output(w *worker, m protocol.Message) {
	s.mu.Lock()
	h := s.hosts[w.id]
	var in *instance
	if h != nil {
		in = h.instances[m.InstanceID]
	}
	if in == nil {
		s.mu.Unlock()
		return
	}
	in.liveOutput = true
	l := s.logLocked(in.svc)
	s.mu.Unlock()
	l.output(in.id, m.Stream, m.Text, m.Dropped)
}

// holdFollower counts a follower of l for token, or refuses it past the
// bounds (unavailable).
func (s *services) holdFollower(l *serviceLog, name, token string) error {
	s.followMu.Lock()
	defer s.followMu.Unlock()
	if s.followersEnded {
		return job.Errorf(job.CodeUnavailable, "the orchestrator is shutting down")
	}
	if s.followByToken[token] >= s.cfg.FollowersPerToken {
		return job.Errorf(job.CodeUnavailable, "this token follows %d service logs already, as many as it may (Services.FollowersPerToken)", s.followByToken[token])
	}
	if l.following >= s.cfg.FollowersPerService {
		return job.Errorf(job.CodeUnavailable, "service %s has %d log followers already, as many as it may (Services.FollowersPerService)", name, l.following)
	}
	s.followByToken[token]++
	l.following++
	s.following[l] = true
	return nil
}

func (s *services) dropFollower(l *serviceLog, token string) {
	s.followMu.Lock()
	defer s.followMu.Unlock()
	if l.following--; l.following <= 0 {
		delete(s.following, l)
	}
	if s.followByToken[token]--; s.followByToken[token] <= 0 {
		delete(s.followByToken, token)
	}
}

// FollowServiceLog hands fn, in order, the events of the docker service
// d's log after seq after (0: all it holds), as its instances write them:
// first a zero event (Seq 0) once the follower is admitted, so that the
// caller may answer that the stream is open. It returns once fn had the
// end (the service was undeployed, or the orchestrator shuts down), ctx is
// done or fn fails (its error). A follower that falls more than
// ServicesConfig.FollowerBytes behind skips ahead and gets a dropped event
// first. The caller must act in d's namespace; a follower over
// FollowersPerService or FollowersPerToken is refused (unavailable); a
// service no longer deployed is not_found.
func (o *Orchestrator) FollowServiceLog(ctx context.Context, d *job.Deployment, after uint64, fn func(job.ServiceLogEvent) error) error {
	s := o.svc
	if d == nil || d.Service == nil {
		return job.Errorf(job.CodeNotFound, "not a docker service")
	}
	p, err := job.Caller(ctx)
	if err != nil {
		return err
	}
	if !p.Sees(d.Namespace) {
		return job.Errorf(job.CodeNotFound, "no docker service is deployed at %s", d.Name())
	}
	s.mu.Lock()
	if s.list == nil {
		s.mu.Unlock()
		return job.Errorf(job.CodeUnavailable, "docker services are not served here")
	}
	sv := s.serviceLocked(d)
	if sv.removed {
		s.mu.Unlock()
		return job.Errorf(job.CodeNotFound, "no service is deployed at %s", sv.name)
	}
	l := s.logLocked(sv)
	s.mu.Unlock()
	if err := s.holdFollower(l, d.Name(), p.TokenID); err != nil {
		return err
	}
	defer s.dropFollower(l, p.TokenID)
	if err := fn(job.ServiceLogEvent{}); err != nil {
		return err
	}
	last := after
	for {
		evs, gap, end, changed := l.since(last, s.cfg.FollowerBytes)
		if gap != nil {
			if err := fn(*gap); err != nil {
				return err
			}
			last = gap.Seq
		}
		for _, ev := range evs {
			if err := fn(ev); err != nil {
				return err
			}
			last = ev.Seq
		}
		if end != nil && len(evs) == 0 && gap == nil {
			return fn(*end)
		}
		if end != nil {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// endFollowers ends every service log follower (they get an end event)
// and refuses new ones: the server shuts down.
func (s *services) endFollowers() {
	s.followMu.Lock()
	s.followersEnded = true
	logs := make([]*serviceLog, 0, len(s.following))
	for l := range s.following {
		logs = append(logs, l)
	}
	s.followMu.Unlock()
	for _, l := range logs {
		l.end("the orchestrator is shutting down")
	}
}
