package orchestrator

import (
	"context"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// slowFinal holds the store write of every terminal state until release is
// closed.
type slowFinal struct {
	store.Store
	writing chan struct{}
	release chan struct{}
}

func (s *slowFinal) UpdateJob(ctx context.Context, j *job.Job) error {
	if j.Status.Terminal() {
		select {
		case s.writing <- struct{}{}:
		default:
		}
		<-s.release
	}
	return s.Store.UpdateJob(ctx, j)
}

// TestCancelWhileTheResultIsStored: a cancel that arrives while a job's
// result is being stored is a conflict that reports the job as it ended,
// not the running state the store still holds.
func TestCancelWhileTheResultIsStored(t *testing.T) {
	slow := &slowFinal{writing: make(chan struct{}, 1), release: make(chan struct{})}
	h := newHarnessWith(t, t.TempDir(), testConfig(), func(st store.Store) store.Store {
		slow.Store = st
		return slow
	})
	w := h.dial(luaCaps(1))
	w.keepAlive()
	j := h.submit(job.Request{Type: job.TypeLua, Code: "return 1"})
	task := w.next(5 * time.Second)
	eventually(t, 5*time.Second, func() error {
		if v := h.stored(j.ID); v.Status != job.StatusRunning {
			return errorf("stored as %s", v.Status)
		}
		return nil
	})
	w.send(resultMessage(task, job.StatusCompleted))
	<-slow.writing
	v, err := h.o.Cancel(tenantCtx(), j.ID)
	close(slow.release)
	if job.ErrorCode(err) != job.CodeConflict {
		t.Fatalf("cancel: %v, want a conflict", err)
	}
	if v == nil || v.Status != job.StatusCompleted {
		t.Fatalf("cancel reported %+v, want the completed job", v)
	}
}

// TestListWhileTheResultIsStored: a job listed while its result is being
// stored is shown as it ended, and, like every listed job, without the
// result's files.
func TestListWhileTheResultIsStored(t *testing.T) {
	slow := &slowFinal{writing: make(chan struct{}, 1), release: make(chan struct{})}
	h := newHarnessWith(t, t.TempDir(), testConfig(), func(st store.Store) store.Store {
		slow.Store = st
		return slow
	})
	w := h.dial(job.Capabilities{Runtimes: []job.Type{job.TypeDocker}, Concurrency: 1, Docker: &job.DockerCapabilities{}})
	w.keepAlive()
	j := h.submit(job.Request{Type: job.TypeDocker, DockerImage: "alpine:3"})
	task := w.next(5 * time.Second)
	m := resultMessage(task, job.StatusCompleted)
	m.Result.Files = map[string][]byte{"out.bin": make([]byte, 1<<20)}
	w.send(m)
	<-slow.writing
	jobs, _, err := h.o.Jobs(context.Background(), store.JobFilter{})
	close(slow.release)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("list: %d jobs, %v", len(jobs), err)
	}
	v := jobs[0]
	if v.ID != j.ID || v.Status != job.StatusCompleted || v.Result == nil {
		t.Fatalf("listed %+v", v)
	}
	if v.Result.Files != 1 || v.Result.FilesBytes != 1<<20 {
		t.Fatalf("listed job's files: %+v, want one of 1 MiB", v.Result)
	}
	got, err := h.o.Wait(context.Background(), j.ID, 5*time.Second)
	if err != nil || len(got.Result.Files["out.bin"]) != 1<<20 {
		t.Fatalf("the job itself lost its files: %v", err)
	}
}
