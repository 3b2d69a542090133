package sqlite

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// killedWriterEnv, when set to a directory, makes TestKilledWriterKeeps
// AcknowledgedWrites the writing process: it writes jobs there from many
// goroutines, printing each id once its write has returned nil, until it
// is killed.
const killedWriterEnv = "ZERVERLESS_TEST_KILLED_WRITER_DIR"

// TestKilledWriterKeepsAcknowledgedWrites: a process that writes from 16
// goroutines at once — creations, updates with results and log events,
// so that they share transactions — is killed with SIGKILL while it
// writes. Every write it was told had succeeded is in the database when
// it is opened again, and the database is sound.
func TestKilledWriterKeepsAcknowledgedWrites(t *testing.T) {
	if dir := os.Getenv(killedWriterEnv); dir != "" {
		writeUntilKilled(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestKilledWriterKeepsAcknowledgedWrites$")
	cmd.Env = append(os.Environ(), killedWriterEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]string{} // job id: the last state acknowledged
	sc := bufio.NewScanner(out)
	note := func(line string) {
		if rest, ok := strings.CutPrefix(line, "ack "); ok {
			id, state, _ := strings.Cut(rest, " ")
			acked[id] = state
		}
	}
	for sc.Scan() && len(acked) < 2000 {
		note(sc.Text())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// What was printed before the kill was acknowledged before it too.
	for sc.Scan() {
		note(sc.Text())
	}
	cmd.Wait() //nolint:errcheck // killed
	if len(acked) < 100 {
		t.Fatalf("the writer acknowledged only %d writes before it was killed", len(acked))
	}

	s := openTest(t, dir)
	defer s.Close()
	ctx := context.Background()
	var check string
	if err := s.writeDB.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity check: %q, %v", check, err)
	}
	for id, state := range acked {
		j, err := s.GetJob(ctx, id)
		if err != nil {
			t.Fatalf("job %s was acknowledged (%s) but is not stored: %v", id, state, err)
		}
		if state == "done" {
			if j.Status != job.StatusCompleted || j.Result == nil || string(j.Result.Result) != `"`+id+`"` {
				t.Fatalf("job %s was acknowledged completed but is stored as %s with result %+v", id, j.Status, j.Result)
			}
			evs, err := s.JobLog(ctx, id, 0, 10)
			if err != nil || len(evs) != 1 || evs[0].Status != job.StatusCompleted {
				t.Fatalf("job %s's acknowledged log event: %+v, %v", id, evs, err)
			}
		}
	}
}

// writeUntilKilled is the writing process of
// TestKilledWriterKeepsAcknowledgedWrites.
func writeUntilKilled(dir string) {
	cfg := DefaultConfig()
	cfg.Path = dir + "/zerverless.db"
	s, err := Open(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx := context.Background()
	var mu sync.Mutex
	ack := func(id, state string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf("ack %s %s\n", id, state)
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("g%02d-%06d", g, i)
				j := &job.Job{ID: id, Namespace: "default", Type: job.TypeLua, Status: job.StatusPending, CreatedAt: time.Now()}
				if err := s.CreateJob(ctx, j); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				ack(id, "created")
				if i%2 == 1 {
					continue
				}
				j.Status = job.StatusCompleted
				j.FinishedAt = time.Now()
				j.Result = &job.Result{Status: job.StatusCompleted, Result: []byte(`"` + id + `"`)}
				if err := s.UpdateJob(ctx, j); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				ev := job.LogEvent{Seq: 1, Stream: job.LogStatus, Status: job.StatusCompleted, Time: time.Now()}
				if err := s.AppendJobLog(ctx, id, ev); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				ack(id, "done")
			}
		})
	}
	wg.Wait()
}
