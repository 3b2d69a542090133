package sqlite

import (
	"context"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

// TestJobLogs: a job's log is read back in order from a point, summed up
// for a writer after a reopen, and removed with the job when it expires.
func TestJobLogs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	j := &job.Job{ID: "j1", Namespace: "default", Type: job.TypeLua, Status: job.StatusPending, MaxAttempts: 1, CreatedAt: time.Unix(0, 10)}
	if err := s.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	evs := []job.LogEvent{
		{Seq: 1, Stream: job.LogStatus, Status: job.StatusRunning, Attempt: 1},
		{Seq: 2, Stream: job.LogStdout, Text: "hello\n"},
		{Seq: 3, Stream: job.LogStderr, Text: "oops"},
		{Seq: 4, Stream: job.LogStatus, Status: job.StatusCompleted, Attempt: 1, Dropped: 7},
	}
	for _, ev := range evs {
		if err := s.AppendJobLog(ctx, j.ID, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AppendJobLog(ctx, j.ID, evs[0]); err == nil {
		t.Error("an event appended twice was stored")
	}
	if err := s.AppendJobLog(ctx, j.ID, job.LogEvent{Seq: 9, Stream: "bogus"}); job.ErrorCode(err) != job.CodeInvalid {
		t.Errorf("an unknown stream: %v", err)
	}
	s.Close()

	s = openTest(t, dir)
	defer s.Close()
	got, err := s.JobLog(ctx, j.ID, 1, 2)
	if err != nil || len(got) != 2 || got[0].Text != "hello\n" || got[1].Stream != job.LogStderr {
		t.Fatalf("JobLog after 1, 2 events: %+v %v", got, err)
	}
	st, err := s.JobLogState(ctx, j.ID)
	if err != nil || st.LastSeq != 4 || st.Events != 4 || st.OutputBytes != 10 || st.LastStatus == nil || st.LastStatus.Status != job.StatusCompleted || st.LastStatus.Dropped != 7 {
		t.Fatalf("JobLogState: %+v %v", st, err)
	}
	if st, err := s.JobLogState(ctx, "unknown"); err != nil || st.LastSeq != 0 || st.LastStatus != nil {
		t.Errorf("JobLogState of an unknown job: %+v %v", st, err)
	}

	j.Status, j.FinishedAt = job.StatusCompleted, time.Unix(0, 20)
	if err := s.UpdateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ExpireJobs(ctx, store.Expiry{FinishedBefore: time.Unix(0, 21), Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.JobLog(ctx, j.ID, 0, 100); err != nil || len(got) != 0 {
		t.Errorf("the log of an expired job: %+v %v", got, err)
	}
}

// TestUpdateJobWithLog: a job's new state and its status event are stored
// together, or neither is: an unknown job gets no event, and an event the
// log refuses (its number taken) leaves the job as it was.
func TestUpdateJobWithLog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	j := &job.Job{ID: "j1", Namespace: "default", Type: job.TypeLua, Status: job.StatusPending, MaxAttempts: 1, CreatedAt: time.Unix(0, 10)}
	if err := s.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	run := *j
	run.Status, run.Attempt, run.StartedAt = job.StatusRunning, 1, time.Unix(0, 15)
	if err := s.UpdateJobWithLog(ctx, &run, job.LogEvent{Seq: 1, Stream: job.LogStatus, Time: run.StartedAt, Status: job.StatusRunning, Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	done := run
	done.Status, done.FinishedAt = job.StatusCompleted, time.Unix(0, 20)
	done.Result = &job.Result{Status: job.StatusCompleted, Result: []byte("1"), Attempt: 1}
	if err := s.UpdateJobWithLog(ctx, &done, job.LogEvent{Seq: 1, Stream: job.LogStatus, Status: job.StatusCompleted, Attempt: 1}); err == nil {
		t.Error("an event numbered as one stored was stored")
	}
	if got, err := s.GetJob(ctx, j.ID); err != nil || got.Status != job.StatusRunning || got.Result != nil {
		t.Errorf("after a refused event the job is %+v (%v), want it running", got, err)
	}
	if err := s.UpdateJobWithLog(ctx, &done, job.LogEvent{Seq: 2, Stream: "bogus"}); job.ErrorCode(err) != job.CodeInvalid {
		t.Errorf("an unknown stream: %v", err)
	}
	other := done
	other.ID = "unknown"
	if err := s.UpdateJobWithLog(ctx, &other, job.LogEvent{Seq: 1, Stream: job.LogStatus, Status: job.StatusCompleted}); job.ErrorCode(err) != job.CodeNotFound {
		t.Errorf("an unknown job: %v", err)
	}
	if st, err := s.JobLogState(ctx, "unknown"); err != nil || st.Events != 0 {
		t.Errorf("an unknown job's log: %+v %v", st, err)
	}
	if err := s.UpdateJobWithLog(ctx, &done, job.LogEvent{Seq: 2, Stream: job.LogStatus, Status: job.StatusCompleted, Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openTest(t, dir)
	defer s.Close()
	if got, err := s.GetJob(ctx, j.ID); err != nil || got.Status != job.StatusCompleted || got.Result == nil {
		t.Errorf("stored job %+v (%v), want it completed", got, err)
	}
	st, err := s.JobLogState(ctx, j.ID)
	if err != nil || st.LastSeq != 2 || st.Events != 2 || st.LastStatus == nil || st.LastStatus.Status != job.StatusCompleted {
		t.Errorf("JobLogState: %+v %v", st, err)
	}
	counts, err := s.CountJobs(ctx)
	if err != nil || counts[job.StatusCompleted] != 1 || counts[job.StatusRunning] != 0 || counts[job.StatusPending] != 0 {
		t.Errorf("counts %v %v", counts, err)
	}
}
