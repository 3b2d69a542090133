package orchestrator

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
	"github.com/zerverless/zerverless/internal/store"
	"github.com/zerverless/zerverless/internal/store/sqlite"
)

// logFollower follows a job's log in the background; its events arrive on
// events, and done is closed when FollowJobLog returns (err then set).
type logFollower struct {
	events chan job.LogEvent
	done   chan struct{}
	err    error
	cancel context.CancelFunc
}

func follow(t *testing.T, o *Orchestrator, ctx context.Context, id string, after uint64) *logFollower {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	f := &logFollower{events: make(chan job.LogEvent, 1024), done: make(chan struct{}), cancel: cancel}
	t.Cleanup(cancel)
	go func() {
		defer close(f.done)
		f.err = o.FollowJobLog(ctx, id, after, func(ev job.LogEvent) error {
			if ev.Seq != 0 {
				f.events <- ev
			}
			return nil
		})
	}()
	return f
}

// until returns the events up to and including the first that match
// reports true for, failing after d.
func (f *logFollower) until(t *testing.T, d time.Duration, match func(job.LogEvent) bool) []job.LogEvent {
	t.Helper()
	var got []job.LogEvent
	timeout := time.After(d)
	for {
		select {
		case ev := <-f.events:
			got = append(got, ev)
			if match(ev) {
				return got
			}
		case <-f.done:
			// Drain what was sent before the end.
			for {
				select {
				case ev := <-f.events:
					got = append(got, ev)
					if match(ev) {
						return got
					}
				default:
					t.Fatalf("the log ended (err %v) before the event wanted; got %+v", f.err, got)
				}
			}
		case <-timeout:
			t.Fatalf("no event wanted within %v; got %+v", d, got)
		}
	}
}

func hasText(s string) func(job.LogEvent) bool {
	return func(ev job.LogEvent) bool { return strings.Contains(ev.Text, s) }
}

func ends(ev job.LogEvent) bool { return ev.Ends() }

func outputMessage(t *job.Task, stream job.LogStream, text string) protocol.Message {
	return protocol.Message{Type: protocol.TypeOutput, JobID: t.JobID, LeaseID: t.LeaseID, Stream: stream, Text: text}
}

// checkSeqs fails unless evs are numbered one after the other from first.
func checkSeqs(t *testing.T, evs []job.LogEvent, first uint64) {
	t.Helper()
	for i, ev := range evs {
		if ev.Seq != first+uint64(i) {
			t.Fatalf("event %d has seq %d, want %d: %+v", i, ev.Seq, first+uint64(i), evs)
		}
	}
}

// TestLogFollowSeesOutputWhileRunning: output a worker sends while it runs
// a task reaches a follower before the job ends — the fake worker sends the
// result only once the follower has the line — and the stream ends with
// the final status.
func TestLogFollowSeesOutputWhileRunning(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	w := h.dial(luaCaps(1))
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1"})
	f := follow(t, h.o, tenantCtx(), j.ID, 0)
	task := w.next(5 * time.Second)
	w.send(outputMessage(task, job.LogStdout, "first\n"))
	got := f.until(t, 10*time.Second, hasText("first"))
	if st := h.job(j.ID).Status; st != job.StatusRunning {
		t.Fatalf("the job is %s when its first line arrived, want running", st)
	}
	w.send(outputMessage(task, job.LogStderr, "oops\n"))
	w.send(resultMessage(task, job.StatusCompleted))
	got = append(got, f.until(t, 10*time.Second, ends)...)
	checkSeqs(t, got, 1)
	last := got[len(got)-1]
	if last.Status != job.StatusCompleted {
		t.Errorf("the last event is %+v, want completed", last)
	}
	var stderr bool
	for _, ev := range got {
		stderr = stderr || (ev.Stream == job.LogStderr && ev.Text == "oops\n")
	}
	if !stderr {
		t.Errorf("stderr missing from %+v", got)
	}
	<-f.done
	if f.err != nil {
		t.Errorf("FollowJobLog: %v", f.err)
	}

	// After the end: the same log from the store, then the end.
	again := follow(t, h.o, tenantCtx(), j.ID, 0)
	replay := again.until(t, 10*time.Second, ends)
	if len(replay) != len(got) {
		t.Fatalf("the replay holds %d events, the live log %d: %+v", len(replay), len(got), replay)
	}
	for i := range got {
		if replay[i].Seq != got[i].Seq || replay[i].Text != got[i].Text || replay[i].Stream != got[i].Stream {
			t.Errorf("replay %d = %+v, live %+v", i, replay[i], got[i])
		}
	}
	<-again.done

	// Output for a lease that is not current is dropped.
	w.send(outputMessage(task, job.LogStdout, "late\n"))
	evs, ended, err := h.o.JobLog(tenantCtx(), j.ID, 0, 100)
	if err != nil || !ended || len(evs) != len(got) {
		t.Errorf("JobLog = %d events, ended %v, %v; want %d, true", len(evs), ended, err, len(got))
	}
}

// TestLogFollowCanceledJob: canceling a running job ends its followers'
// streams with the canceled status.
func TestLogFollowCanceledJob(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	w := h.dial(luaCaps(1))
	w.keepAlive()
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1"})
	task := w.next(5 * time.Second)
	f := follow(t, h.o, tenantCtx(), j.ID, 0)
	w.send(outputMessage(task, job.LogStdout, "working\n"))
	f.until(t, 10*time.Second, hasText("working"))
	if _, err := h.o.Cancel(tenantCtx(), j.ID); err != nil {
		t.Fatal(err)
	}
	got := f.until(t, 10*time.Second, ends)
	if last := got[len(got)-1]; last.Status != job.StatusCanceled {
		t.Errorf("the stream ended with %+v, want canceled", last)
	}
	select {
	case <-f.done:
	case <-time.After(10 * time.Second):
		t.Fatal("FollowJobLog did not return after the end")
	}
}

// TestLogFollowAcrossWorkerLoss: a worker that goes away mid-run shows in
// the stream as the attempt restarting, and the next worker's output
// follows in the same stream.
func TestLogFollowAcrossWorkerLoss(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	w1 := h.dial(luaCaps(1))
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1"})
	f := follow(t, h.o, tenantCtx(), j.ID, 0)
	task := w1.next(5 * time.Second)
	w1.send(outputMessage(task, job.LogStdout, "attempt one\n"))
	f.until(t, 10*time.Second, hasText("attempt one"))
	w1.Close()
	got := f.until(t, 10*time.Second, func(ev job.LogEvent) bool { return ev.Restarted })
	if ev := got[len(got)-1]; ev.Stream != job.LogStatus || ev.Status != job.StatusPending {
		t.Errorf("the restart is %+v, want a pending status event", ev)
	}
	w2 := h.dial(luaCaps(1))
	task2 := w2.next(10 * time.Second)
	w2.send(outputMessage(task2, job.LogStdout, "attempt two\n"))
	f.until(t, 10*time.Second, hasText("attempt two"))
	w2.send(resultMessage(task2, job.StatusCompleted))
	if last := f.until(t, 10*time.Second, ends); last[len(last)-1].Status != job.StatusCompleted {
		t.Errorf("the stream ended with %+v", last[len(last)-1])
	}
}

// TestLogSurvivesRestart: a follower that reconnects to a restarted
// orchestrator after the last event it had (Last-Event-ID) gets every
// event stored after it — the output of the run the restart interrupted,
// the restart itself — and then the rest.
func TestLogSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, testConfig())
	w := h.dial(luaCaps(1))
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1"})
	f := follow(t, h.o, tenantCtx(), j.ID, 0)
	task := w.next(5 * time.Second)
	w.send(outputMessage(task, job.LogStdout, "one\n"))
	seen := f.until(t, 10*time.Second, hasText("one"))
	lastSeen := seen[len(seen)-1].Seq
	// Written after the follower's last event, before the restart.
	w.send(outputMessage(task, job.LogStdout, "two\n"))
	w.send(outputMessage(task, job.LogStderr, "three\n"))
	eventually(t, 10*time.Second, func() error {
		evs, _, err := h.o.JobLog(tenantCtx(), j.ID, lastSeen, 100)
		if err != nil || len(evs) < 2 {
			return errorf("stored after %d: %d events, %v", lastSeen, len(evs), err)
		}
		return nil
	})
	f.cancel()
	h.close()

	h2 := newHarness(t, dir, testConfig())
	f2 := follow(t, h2.o, tenantCtx(), j.ID, lastSeen)
	got := f2.until(t, 10*time.Second, func(ev job.LogEvent) bool { return ev.Restarted })
	checkSeqs(t, got, lastSeen+1)
	if len(got) < 3 || got[0].Text != "two\n" || got[1].Text != "three\n" || got[1].Stream != job.LogStderr {
		t.Fatalf("after the restart the follower got %+v, want two, three, then the restart", got)
	}
	w2 := h2.dial(luaCaps(1))
	task2 := w2.next(10 * time.Second)
	w2.send(resultMessage(task2, job.StatusCompleted))
	rest := f2.until(t, 10*time.Second, ends)
	checkSeqs(t, rest, got[len(got)-1].Seq+1)
}

// TestLogTenancy: another namespace's token cannot read or follow a job's
// log (not_found, as the job view); a context without a principal is
// refused.
func TestLogTenancy(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "alice"})
	bob := job.WithPrincipal(context.Background(), job.Principal{TokenID: "bob", Kind: job.TokenNamespace, Namespace: "bob"})
	if _, _, err := h.o.JobLog(bob, j.ID, 0, 10); job.ErrorCode(err) != job.CodeNotFound {
		t.Errorf("JobLog as bob: %v, want not_found", err)
	}
	if err := h.o.FollowJobLog(bob, j.ID, 0, func(job.LogEvent) error { return nil }); job.ErrorCode(err) != job.CodeNotFound {
		t.Errorf("FollowJobLog as bob: %v, want not_found", err)
	}
	if _, _, err := h.o.JobLog(context.Background(), j.ID, 0, 10); job.ErrorCode(err) != job.CodeUnauthorized {
		t.Errorf("JobLog without a principal: %v, want unauthorized", err)
	}
}

// TestLogBounds: a job's log keeps at most Logs.JobBytes of output and
// counts the rest; followers past Logs.FollowersPerJob are refused.
func TestLogBounds(t *testing.T) {
	cfg := testConfig()
	cfg.Logs.JobBytes = 10
	cfg.Logs.FollowersPerJob = 1
	h := newHarness(t, t.TempDir(), cfg)
	w := h.dial(luaCaps(1))
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1"})
	f := follow(t, h.o, tenantCtx(), j.ID, 0)
	task := w.next(5 * time.Second)
	f.until(t, 10*time.Second, func(ev job.LogEvent) bool { return ev.Status == job.StatusRunning })
	err := h.o.FollowJobLog(tenantCtx(), j.ID, 0, func(job.LogEvent) error { return nil })
	if job.ErrorCode(err) != job.CodeUnavailable {
		t.Errorf("a second follower: %v, want unavailable", err)
	}
	w.send(outputMessage(task, job.LogStdout, "0123456789abcdef"))
	w.send(outputMessage(task, job.LogStdout, "more"))
	w.send(resultMessage(task, job.StatusCompleted))
	got := f.until(t, 10*time.Second, ends)
	var text string
	for _, ev := range got {
		text += ev.Text
	}
	if text != "0123456789" {
		t.Errorf("the log kept %q, want the first 10 bytes", text)
	}
	if last := got[len(got)-1]; last.Dropped != 10 {
		t.Errorf("the end counts %d bytes dropped, want 10", last.Dropped)
	}
}

// TestLogOutputOfOthersDropped: a worker that does not hold a job's lease
// — another session naming the job and its lease, or the holder naming a
// lease it made up — cannot write to the job's log.
func TestLogOutputOfOthersDropped(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	holder := h.dial(luaCaps(1))
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1"})
	task := holder.next(5 * time.Second)
	liar := h.dial(luaCaps(1))
	anon := h.dialAs(luaCaps(1), "")
	liar.send(outputMessage(task, job.LogStdout, "forged by another worker\n"))
	anon.send(outputMessage(task, job.LogStdout, "forged by a volunteer\n"))
	made := *task
	made.LeaseID = "made-up"
	holder.send(outputMessage(&made, job.LogStdout, "forged lease\n"))
	holder.send(outputMessage(task, job.LogStdout, "genuine\n"))
	holder.send(resultMessage(task, job.StatusCompleted))
	f := follow(t, h.o, tenantCtx(), j.ID, 0)
	got := f.until(t, 10*time.Second, ends)
	var text string
	for _, ev := range got {
		text += ev.Text
	}
	if text != "genuine\n" {
		t.Errorf("the log holds %q, want only the holder's output", text)
	}
}

// TestLogSlowFollowerMissesNothing: a follower slower than the log, which
// may hold only Logs.FollowerEvents events, reads on from the store and
// gets every event in order.
func TestLogSlowFollowerMissesNothing(t *testing.T) {
	cfg := testConfig()
	cfg.Logs.FollowerEvents = 2
	h := newHarness(t, t.TempDir(), cfg)
	w := h.dial(luaCaps(1))
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1"})
	task := w.next(5 * time.Second)
	release := make(chan struct{})
	var got []job.LogEvent
	done := make(chan error, 1)
	go func() {
		done <- h.o.FollowJobLog(tenantCtx(), j.ID, 0, func(ev job.LogEvent) error {
			if ev.Seq == 1 {
				<-release // hold the follower while the log grows
			}
			if ev.Seq != 0 {
				got = append(got, ev)
			}
			return nil
		})
	}()
	const n = 50
	for i := range n {
		w.send(outputMessage(task, job.LogStdout, string(rune('a'+i%26))))
	}
	w.send(resultMessage(task, job.StatusCompleted))
	eventually(t, 10*time.Second, func() error {
		evs, ended, err := h.o.JobLog(tenantCtx(), j.ID, 0, 100)
		if err != nil || !ended || len(evs) < n+2 {
			return errorf("stored %d events, ended %v, %v", len(evs), ended, err)
		}
		return nil
	})
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, got, 1)
	if len(got) != n+2 || !got[len(got)-1].Ends() {
		t.Errorf("the slow follower got %d events, want %d ending with the end", len(got), n+2)
	}
}

// countingLogState counts the reads of a log's stored state.
type countingLogState struct {
	*sqlite.Store
	reads atomic.Int64
}

func (s *countingLogState) JobLogState(ctx context.Context, id string) (store.LogState, error) {
	s.reads.Add(1)
	return s.Store.JobLogState(ctx, id)
}

// TestLogOfJobSubmittedHere: the log of a job submitted to this
// orchestrator is numbered from memory — its state is never read from the
// store while it runs — its events are stored one after the other from 1,
// and nothing of it is kept in memory once it has ended.
func TestLogOfJobSubmittedHere(t *testing.T) {
	var counted *countingLogState
	h := newHarnessWith(t, t.TempDir(), testConfig(), func(st store.Store) store.Store {
		counted = &countingLogState{Store: st.(*sqlite.Store)}
		return counted
	})
	w := h.dial(luaCaps(1))
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1"})
	task := w.next(5 * time.Second)
	w.send(outputMessage(task, job.LogStdout, "one\n"))
	w.send(outputMessage(task, job.LogStderr, "two\n"))
	w.send(resultMessage(task, job.StatusCompleted))
	var evs []job.LogEvent
	eventually(t, 10*time.Second, func() error {
		var err error
		evs, err = h.store.JobLog(context.Background(), j.ID, 0, 100)
		if err != nil || len(evs) == 0 || !evs[len(evs)-1].Ends() {
			return errorf("stored log %+v, %v: not ended yet", evs, err)
		}
		return nil
	})
	checkSeqs(t, evs, 1)
	var texts []string
	for _, ev := range evs {
		texts = append(texts, ev.Text)
	}
	if got := strings.Join(texts, ""); got != "one\ntwo\n" {
		t.Errorf("the log's output is %q, want one, two", got)
	}
	if evs[0].Stream != job.LogStatus || evs[0].Status != job.StatusRunning {
		t.Errorf("the log starts with %+v, want the running status", evs[0])
	}
	if n := counted.reads.Load(); n != 0 {
		t.Errorf("the log's state was read from the store %d times", n)
	}
	eventually(t, 10*time.Second, func() error {
		h.o.logs.mu.Lock()
		defer h.o.logs.mu.Unlock()
		if n := len(h.o.logs.logs); n != 0 {
			return errorf("%d logs still held after the job ended", n)
		}
		return nil
	})
	// Read again once ended: from the store, the same events.
	again, _, err := h.o.JobLog(tenantCtx(), j.ID, 0, 100)
	if err != nil || len(again) != len(evs) {
		t.Fatalf("the ended job's log: %d events, %v; want %d", len(again), err, len(evs))
	}
}

// TestLogOfRecoveredJob: a job recovered at start reads its log's state
// from the store once, goes on numbering after what the store holds, and
// lets its log go once it ends.
func TestLogOfRecoveredJob(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir, testConfig())
	w := h.dial(luaCaps(1))
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1"})
	task := w.next(5 * time.Second)
	w.send(outputMessage(task, job.LogStdout, "before\n"))
	var before []job.LogEvent
	eventually(t, 10*time.Second, func() error {
		var err error
		before, err = h.store.JobLog(context.Background(), j.ID, 0, 100)
		if err != nil || len(before) < 2 {
			return errorf("stored log %+v, %v", before, err)
		}
		return nil
	})
	h.close()

	var counted *countingLogState
	h2 := newHarnessWith(t, dir, testConfig(), func(st store.Store) store.Store {
		counted = &countingLogState{Store: st.(*sqlite.Store)}
		return counted
	})
	w2 := h2.dial(luaCaps(1))
	task2 := w2.next(10 * time.Second)
	w2.send(outputMessage(task2, job.LogStdout, "after\n"))
	w2.send(resultMessage(task2, job.StatusCompleted))
	var evs []job.LogEvent
	eventually(t, 10*time.Second, func() error {
		var err error
		evs, err = h2.store.JobLog(context.Background(), j.ID, 0, 100)
		if err != nil || len(evs) == 0 || !evs[len(evs)-1].Ends() {
			return errorf("stored log %+v, %v: not ended yet", evs, err)
		}
		return nil
	})
	checkSeqs(t, evs, 1)
	if len(evs) < len(before)+3 {
		t.Errorf("after the restart the log is %+v, want the restart, the new run, its output and the end after %d events", evs, len(before))
	}
	if n := counted.reads.Load(); n != 1 {
		t.Errorf("the recovered job's log state was read %d times, want once", n)
	}
	eventually(t, 10*time.Second, func() error {
		h2.o.logs.mu.Lock()
		defer h2.o.logs.mu.Unlock()
		if n := len(h2.o.logs.logs); n != 0 {
			return errorf("%d logs still held after the job ended", n)
		}
		return nil
	})
}
