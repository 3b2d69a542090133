package orchestrator

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
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
