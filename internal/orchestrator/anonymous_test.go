package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
	"github.com/zerverless/zerverless/internal/protocol/protocoltest"
)

// TestOneAddressAnswersOneReplica: anonymous volunteers are known by their
// address, so two sessions from one address (or one session reconnecting)
// are one identity and get one replica of a job between them; otherwise one
// volunteer could answer every replica alike and make its forged answer the
// quorum. A volunteer at another address gets the second replica.
func TestOneAddressAnswersOneReplica(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "victim", Replicas: 2})

	first := protocoltest.RegisterFrom(t, h.url(), "127.0.0.1", "", luaCaps(1))
	first.KeepAlive()
	forge := job.Result{Status: job.StatusCompleted, Output: "forged"}
	first.Answer(first.Next(5*time.Second), forge)
	// The same address again, as a new session and a second one at once.
	again := protocoltest.RegisterFrom(t, h.url(), "127.0.0.1", "", luaCaps(1))
	again.KeepAlive()
	if task, err := again.TryNext(500 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		if err == nil {
			again.Answer(task, forge)
			got, _ := h.o.Wait(context.Background(), j.ID, 5*time.Second)
			t.Fatalf("one address answered both replicas: job %s output %q", got.Status, got.Result.Output)
		}
		t.Fatal(err)
	}

	other := protocoltest.RegisterFrom(t, h.url(), "127.0.0.2", "", luaCaps(1))
	other.KeepAlive()
	other.Answer(other.Next(5*time.Second), job.Result{Status: job.StatusCompleted, Output: "1"})
	third := protocoltest.RegisterFrom(t, h.url(), "127.0.0.3", "", luaCaps(1))
	third.KeepAlive()
	third.Answer(third.Next(5*time.Second), job.Result{Status: job.StatusCompleted, Output: "1"})
	got, err := h.o.Wait(context.Background(), j.ID, 5*time.Second)
	if err != nil || got.Status != job.StatusCompleted || got.Result.Output != "1" {
		t.Fatalf("job: %+v %v", got, err)
	}
}

// TestRejectingVolunteerIsBanned: an anonymous volunteer that takes a job,
// sits on it and gives it back unrun just before its lease would expire,
// then asks for work again, would hold another tenant's job forever at no
// cost (a reject costs neither the job nor, unlike a lost lease, the
// volunteer anything). Rejects by an identity not in good standing count
// toward its ban as lost leases do; the job keeps its attempts and a
// trusted worker finishes it.
func TestRejectingVolunteerIsBanned(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "victim"})
	w := protocoltest.Register(t, h.url(), "", luaCaps(1))
	w.KeepAlive()
	rejectUntilBanned(t, w, false)
	trusted := protocoltest.Register(t, h.url(), harnessSecret, luaCaps(1))
	trusted.KeepAlive()
	trusted.Answer(trusted.Next(5*time.Second), job.Result{Status: job.StatusCompleted})
	got, err := h.o.Wait(context.Background(), j.ID, 5*time.Second)
	if err != nil || got.Status != job.StatusCompleted || got.Attempt != 1 {
		t.Fatalf("job: %+v %v", got, err)
	}
}

// TestAttemptedRejectsCannotFailJobs: a volunteer that takes a job and
// claims its runtime tried and failed (reject with attempted) cannot spend
// the job's attempts: it is charged like a lost lease, so it gets banned
// and the job completes on a trusted worker at attempt 1.
func TestAttemptedRejectsCannotFailJobs(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "victim", MaxAttempts: 2})
	w := protocoltest.Register(t, h.url(), "", luaCaps(1))
	w.KeepAlive()
	rejectUntilBanned(t, w, true)
	if v := h.job(j.ID); v.Status != job.StatusPending || v.Attempt != 1 {
		t.Fatalf("after the volunteer's attempted rejects the job is %s at attempt %d, want pending at 1", v.Status, v.Attempt)
	}
	trusted := protocoltest.Register(t, h.url(), harnessSecret, luaCaps(1))
	trusted.KeepAlive()
	trusted.Answer(trusted.Next(5*time.Second), job.Result{Status: job.StatusCompleted})
	got, err := h.o.Wait(context.Background(), j.ID, 5*time.Second)
	if err != nil || got.Status != job.StatusCompleted || got.Attempt != 1 {
		t.Fatalf("job: %+v %v", got, err)
	}
}

// TestAnonymousSessionsPerAddress: one address may hold at most
// MaxAnonymousSessionsPerAddr anonymous sessions and all addresses
// MaxAnonymousSessions, so that volunteers cannot take every worker
// session the server allows (locking trusted workers out); another
// address, a trusted worker, and the same address once a session ends
// still connect.
func TestAnonymousSessionsPerAddress(t *testing.T) {
	cfg := testConfig()
	cfg.MaxAnonymousSessionsPerAddr = 3
	cfg.MaxAnonymousSessions = 4
	h := newHarness(t, t.TempDir(), cfg)
	var held []*protocoltest.Worker
	for range 3 {
		w := protocoltest.RegisterFrom(t, h.url(), "127.0.0.1", "", luaCaps(1))
		w.KeepAlive()
		held = append(held, w)
	}
	refused := protocoltest.RefusedFrom(t, h.url(), "127.0.0.1", "", luaCaps(1))
	if refused.Permanent || !strings.Contains(refused.Error, "anonymous sessions") {
		t.Fatalf("fourth session from one address: %+v", refused)
	}
	protocoltest.RegisterFrom(t, h.url(), "127.0.0.2", "", luaCaps(1))
	// MaxAnonymousSessions (4) are open: another address is refused too,
	// and a trusted worker still connects.
	if m := protocoltest.RefusedFrom(t, h.url(), "127.0.0.3", "", luaCaps(1)); !strings.Contains(m.Error, "anonymous sessions are open") {
		t.Fatalf("fifth anonymous session: %+v", m)
	}
	protocoltest.RegisterFrom(t, h.url(), "127.0.0.1", harnessSecret, luaCaps(1))
	held[0].Close()
	eventually(t, 5*time.Second, func() error {
		conn, m, err := protocoltest.TryRegisterFrom(t, h.url(), "127.0.0.1", "", luaCaps(1))
		if err != nil {
			return err
		}
		if m.Type != protocol.TypeRegistered {
			conn.CloseNow()
			return fmt.Errorf("refused after a session ended: %+v", m)
		}
		return nil
	})
}

// TestAnonymousResultsAreBounded: an anonymous volunteer's result larger
// than MaxAnonymousResultBytes is not stored (it would spend the victim
// namespace's storage quota: a few dozen 60 MiB results fill it): the job
// goes back to the queue with its attempts, the volunteer's record counts
// a lost lease, and a trusted worker finishes the job. Fields only the
// orchestrator fills (replicas) or another job type produces (a build,
// output files) are dropped from any worker's result.
func TestAnonymousResultsAreBounded(t *testing.T) {
	cfg := testConfig()
	cfg.MaxAnonymousResultBytes = 1 << 20
	h := newHarness(t, t.TempDir(), cfg)
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "victim"})
	anon := protocoltest.Register(t, h.url(), "", luaCaps(1))
	anon.KeepAlive()
	anon.Answer(anon.Next(5*time.Second), job.Result{Status: job.StatusCompleted, Output: strings.Repeat("x", 2<<20)})
	eventually(t, 5*time.Second, func() error {
		v := h.job(j.ID)
		if v.Status != job.StatusPending || v.Attempt != 1 || !strings.Contains(v.Reason, "MaxAnonymousResultBytes") {
			return fmt.Errorf("job is %s at attempt %d: %s", v.Status, v.Attempt, v.Reason)
		}
		return nil
	})
	anon.Close()

	trusted := protocoltest.Register(t, h.url(), harnessSecret, luaCaps(1))
	trusted.KeepAlive()
	trusted.Answer(trusted.Next(5*time.Second), job.Result{Status: job.StatusCompleted, Output: "1",
		Replicas: []job.ReplicaAnswer{{WorkerID: "w1", Agreed: true}, {WorkerID: "w2", Agreed: true}},
		Files:    map[string][]byte{"x": []byte("y")}, Build: &job.BuildResult{}})
	got, err := h.o.Wait(context.Background(), j.ID, 5*time.Second)
	if err != nil || got.Status != job.StatusCompleted || got.Attempt != 1 || got.Result.Output != "1" {
		t.Fatalf("job: %+v %v", got, err)
	}
	if r := got.Result; r.Replicas != nil || r.Files != nil || r.Build != nil {
		t.Fatalf("a lua job's result kept fields no lua run has: %+v", r)
	}
}

// TestAnonymousLeasesFollowResults: an anonymous identity holds, across all
// its sessions, at most as many leases as it has returned results more
// than it lost (at least one). Otherwise one returned result would let an
// address take its sessions' whole claimed concurrency (1024 each) of
// another tenant's queue and sit on it until the leases expire, costing the
// jobs their timeout and the address only one ban.
func TestAnonymousLeasesFollowResults(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	for i := range 20 {
		h.submit(job.Request{Type: job.TypeLua, Code: fmt.Sprintf("return %d", i), Namespace: "victim"})
	}
	a := protocoltest.RegisterFrom(t, h.url(), "127.0.0.1", "", luaCaps(8))
	a.KeepAlive()
	a.Answer(a.Next(5*time.Second), job.Result{Status: job.StatusCompleted})
	a.Answer(a.Next(5*time.Second), job.Result{Status: job.StatusCompleted})
	b := protocoltest.RegisterFrom(t, h.url(), "127.0.0.1", "", luaCaps(8))
	b.KeepAlive()

	trusted := protocoltest.RegisterFrom(t, h.url(), "127.0.0.2", harnessSecret, luaCaps(20))
	trusted.KeepAlive()
	eventually(t, 5*time.Second, func() error {
		anon, mine := 0, 0
		for _, w := range h.o.Workers() {
			if w.ID == trusted.ID {
				mine = w.Running
			} else {
				anon += w.Running
			}
		}
		if anon != 2 || mine != 16 {
			return fmt.Errorf("the anonymous address holds %d jobs and the trusted worker %d; want 2 and 16", anon, mine)
		}
		return nil
	})
}

// TestAnonymousMessagesAreBounded: anyone may volunteer anonymously, so an
// anonymous session may send messages of at most MaxAnonymousMessageBytes
// (a larger one ends it), not the 64 MiB a trusted worker may: otherwise
// registering anonymously would lift the few KiB bound on what a stranger
// makes the orchestrator hold.
func TestAnonymousMessagesAreBounded(t *testing.T) {
	cfg := testConfig()
	cfg.MaxAnonymousMessageBytes = 1 << 20
	h := newHarness(t, t.TempDir(), cfg)
	big := protocol.Message{Type: protocol.TypeResult, JobID: "x", LeaseID: "y",
		Result: &job.Result{Status: job.StatusCompleted, Output: strings.Repeat("x", 2<<20)}}

	trusted := protocoltest.Register(t, h.url(), harnessSecret, luaCaps(1))
	trusted.KeepAlive()
	trusted.Send(big)
	anon := protocoltest.Register(t, h.url(), "", luaCaps(1))
	anon.KeepAlive()
	// The orchestrator may end the session before the whole message is
	// written: the write's own error is no failure.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	anon.Conn.Write(ctx, big)
	cancel()
	anon.WaitClosed(5 * time.Second)
	eventually(t, 5*time.Second, func() error {
		ws := h.o.Workers()
		if len(ws) != 1 || ws[0].ID != trusted.ID {
			return fmt.Errorf("workers %+v, want only the trusted one", ws)
		}
		return nil
	})
}

// TestReplicaFilesCount: a container's /output files are part of the answer
// replicas vote on; otherwise a worker answering last with the agreed
// stdout but files of its own would have its files accepted as verified.
func TestReplicaFilesCount(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	caps := job.Capabilities{Runtimes: []job.Type{job.TypeDocker}, Concurrency: 1, Docker: &job.DockerCapabilities{}}
	j := h.submit(job.Request{Type: job.TypeDocker, DockerImage: "alpine:3", Replicas: 2, Quorum: 2})
	answer := func(files string) {
		w := h.dial(caps)
		w.keepAlive()
		w.Answer(w.next(5*time.Second), job.Result{Status: job.StatusCompleted, Output: "done",
			Files: map[string][]byte{"report.txt": []byte(files)}})
	}
	answer("honest")
	answer("forged")
	var v *job.Job
	eventually(t, 5*time.Second, func() error {
		if v = h.job(j.ID); !v.Status.Terminal() && !strings.Contains(v.Reason, "2 answers") {
			return fmt.Errorf("job is %s: %s", v.Status, v.Reason)
		}
		return nil
	})
	if v.Status.Terminal() {
		t.Fatalf("answers with different files agreed: %s with files %q", v.Status, v.Result.Files["report.txt"])
	}
	answer("honest")
	got, err := h.o.Wait(context.Background(), j.ID, 5*time.Second)
	if err != nil || got.Status != job.StatusCompleted || string(got.Result.Files["report.txt"]) != "honest" {
		t.Fatalf("job: %+v %v", got, err)
	}
}

// flakyPolicies fails until ok is set, then gives every namespace the
// policy p.
type flakyPolicies struct {
	ok atomic.Bool
	p  job.NamespacePolicy
}

func (f *flakyPolicies) NamespacePolicy(_ context.Context, ns string) (job.NamespacePolicy, error) {
	if !f.ok.Load() {
		return job.NamespacePolicy{}, errors.New("database is locked")
	}
	p := f.p
	p.Namespace = ns
	return p, nil
}

// TestUnreadPolicyKeepsJobsOffAnonymousWorkers: a job accepted while its
// namespace's policy cannot be read does not go to an anonymous volunteer
// (the policy may require trusted workers); once the policy is read and
// allows them, it does.
func TestUnreadPolicyKeepsJobsOffAnonymousWorkers(t *testing.T) {
	cfg := testConfig()
	pol := &flakyPolicies{}
	cfg.Policies = pol
	h := newHarness(t, t.TempDir(), cfg)
	anon := protocoltest.Register(t, h.url(), "", luaCaps(1))
	anon.KeepAlive()
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "bob"})
	eventually(t, 5*time.Second, func() error {
		if v := h.job(j.ID); v.Status != job.StatusPending || !strings.Contains(v.Reason, "could not be read") {
			return fmt.Errorf("job is %s: %s", v.Status, v.Reason)
		}
		return nil
	})
	pol.ok.Store(true)
	if task := anon.Next(10 * time.Second); task.JobID != j.ID {
		t.Fatalf("got %s", task.JobID)
	}
}

// TestWorkerTextIsClipped: what a worker writes in a reject's error becomes
// the job's reason cut to job.SummaryTextBytes, not megabytes stored in
// the job's namespace.
func TestWorkerTextIsClipped(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", Namespace: "victim"})
	anon := protocoltest.Register(t, h.url(), "", luaCaps(1))
	anon.KeepAlive()
	huge := strings.Repeat("e", 4<<20)
	anon.Send(protocol.Message{Type: protocol.TypeError, Error: huge})
	task := anon.Next(5 * time.Second)
	anon.Send(protocol.Message{Type: protocol.TypeReject, JobID: task.JobID, LeaseID: task.LeaseID, Error: huge})
	eventually(t, 5*time.Second, func() error {
		v := h.stored(j.ID)
		if v.Status != job.StatusPending || !strings.Contains(v.Reason, "could not run it") {
			return fmt.Errorf("stored job is %s: %.80s", v.Status, v.Reason)
		}
		if len(v.Reason) > 2*job.SummaryTextBytes {
			return fmt.Errorf("the stored reason is %d bytes", len(v.Reason))
		}
		return nil
	})
}

// TestCanceledLeaseFreesItsSlot: a worker that does not answer for a job it
// was told to stop gets its slot back LeaseGrace later, not at the end of
// the job's timeout (an hour at most): an anonymous volunteer's leases
// count against its identity's credit, so until then it would be sent
// nothing.
func TestCanceledLeaseFreesItsSlot(t *testing.T) {
	h := newHarness(t, t.TempDir(), testConfig())
	w := protocoltest.Register(t, h.url(), "", luaCaps(1))
	w.KeepAlive()
	a := h.submit(job.Request{Type: job.TypeLua, Code: "return 1", TimeoutSeconds: ptr(600.0)})
	if task := w.Next(5 * time.Second); task.JobID != a.ID {
		t.Fatalf("got %s", task.JobID)
	}
	if _, err := h.o.Cancel(tenantCtx(), a.ID); err != nil {
		t.Fatal(err)
	}
	b := h.submit(job.Request{Type: job.TypeLua, Code: "return 2"})
	if task := w.Next(10 * time.Second); task.JobID != b.ID {
		t.Fatalf("got %s", task.JobID)
	}
}

// rejectUntilBanned makes w take the job it is offered and give it back
// (with attempted: its runtime claims to have tried), asking for work
// again each time, until it is offered nothing: banned.
func rejectUntilBanned(t *testing.T, w *protocoltest.Worker, attempted bool) {
	t.Helper()
	for round := 0; ; round++ {
		if round > 20 {
			t.Fatalf("the rejecting volunteer still gets the job after %d rejects", round)
		}
		// Asking for work again makes the orchestrator fill the slot.
		w.Send(protocol.Message{Type: protocol.TypeCapabilities, Capabilities: ptr(luaCaps(1))})
		task, err := w.TryNext(time.Second)
		if errors.Is(err, context.DeadlineExceeded) {
			return // banned
		}
		if err != nil {
			t.Fatal(err)
		}
		w.Send(protocol.Message{Type: protocol.TypeReject, JobID: task.JobID, LeaseID: task.LeaseID, Error: "runtime broke", Attempted: attempted})
	}
}
