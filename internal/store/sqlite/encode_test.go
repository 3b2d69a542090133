package sqlite

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// jsonFields lists the JSON names of t's fields, in order.
func jsonFields(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		out = append(out, name)
	}
	return out
}

// TestEncodersKnowEveryField fails when a field is added to a type the
// hand-written encoders write: they must learn it (and these lists with
// them).
func TestEncodersKnowEveryField(t *testing.T) {
	for _, c := range []struct {
		v    any
		want []string
	}{
		{job.LogEvent{}, []string{"seq", "stream", "time", "text", "status", "attempt", "reason", "restarted", "dropped"}},
		{job.Result{}, []string{"status", "output", "stderr", "result", "error", "exit_code", "duration_ms", "truncated",
			"oom_killed", "peak_memory_bytes", "cpu_time_ms", "warm_start", "files", "build", "egress", "attempt", "worker_id", "replicas"}},
		{job.ResultSummary{}, []string{"error", "exit_code", "duration_ms", "truncated", "oom_killed", "peak_memory_bytes",
			"cpu_time_ms", "output_bytes", "stderr_bytes", "result_bytes", "files", "files_bytes"}},
	} {
		if got := jsonFields(reflect.TypeOf(c.v)); !slices.Equal(got, c.want) {
			t.Errorf("%T has fields %q, the encoders know %q", c.v, got, c.want)
		}
	}
}

// sameJSON fails unless got and gotErr are what encoding/json makes of v.
func sameJSON(t *testing.T, v any, got []byte, gotErr error) {
	t.Helper()
	want, wantErr := json.Marshal(v)
	if (gotErr != nil) != (wantErr != nil) {
		t.Fatalf("error %v, encoding/json's %v", gotErr, wantErr)
	}
	if gotErr != nil {
		if gotErr.Error() != wantErr.Error() {
			t.Fatalf("error %q, encoding/json's %q", gotErr, wantErr)
		}
		return
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encoded\n%s\nencoding/json\n%s", got, want)
	}
}

func FuzzMarshalLogEvent(f *testing.F) {
	f.Add(uint64(1), "status", int64(1764650000123456789), 0, "", "completed", 1, "", false, int64(0))
	f.Add(uint64(7), "stdout", int64(0), 3600, "hello <world> & \"you\"\n\t\x01", "", 0, "", false, int64(12))
	f.Add(uint64(1<<63), "stderr", int64(-1), -7200, "caf\xc3\xa9 \xff\u2028", "running", 3, "re-queued: worker w1 went away", true, int64(-5))
	f.Add(uint64(2), "status", int64(1<<62), 0, "", "failed", -1, "no attempts left \\ after 3", false, int64(0))
	f.Fuzz(func(t *testing.T, seq uint64, stream string, ns int64, offset int, text, status string, attempt int, reason string, restarted bool, dropped int64) {
		tm := time.Unix(0, ns).UTC()
		if offset%86400 != 0 {
			tm = tm.In(time.FixedZone("z", offset%(30*3600)))
		}
		ev := job.LogEvent{Seq: seq, Stream: job.LogStream(stream), Time: tm, Text: text,
			Status: job.Status(status), Attempt: attempt, Reason: reason, Restarted: restarted, Dropped: dropped}
		got, err := marshalLogEvent(&ev)
		sameJSON(t, &ev, got, err)
	})
}

func TestMarshalLogEventOutOfRange(t *testing.T) {
	for _, tm := range []time.Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), {}} {
		ev := job.LogEvent{Seq: 1, Stream: job.LogStatus, Time: tm}
		got, err := marshalLogEvent(&ev)
		sameJSON(t, &ev, got, err)
	}
}

func FuzzMarshalResult(f *testing.F) {
	f.Add("completed", "out\n", "", []byte("1"), "", 0, int64(3), false, false, int64(0), int64(0), false, 1, "w1", 0)
	f.Add("failed", "", "err <b>", []byte(nil), "lua: attempt to call a nil value & \"x\"", 2, int64(-1), true, true, int64(1<<40), int64(7), true, -3, "", 1)
	f.Add("timeout", "\xff\xfe", "\u2029", []byte(`{"a":1}`), "\x00", 137, int64(0), false, true, int64(-2), int64(0), false, 0, "wörker", 2)
	f.Fuzz(func(t *testing.T, status, output, stderr string, value []byte, errText string, exit int, dur int64, trunc, oom bool, peak, cpu int64, warm bool, attempt int, worker string, extra int) {
		r := &job.Result{Status: job.Status(status), Output: output, Stderr: stderr, Error: errText, ExitCode: exit,
			DurationMS: dur, Truncated: trunc, OOMKilled: oom, PeakMemoryBytes: peak, CPUTimeMS: cpu, WarmStart: warm,
			Attempt: attempt, WorkerID: worker}
		if json.Valid(value) {
			r.Result = value
		}
		switch extra % 4 {
		case 1:
			r.Files = map[string][]byte{"a.txt": []byte(output)}
			r.Egress = []job.EgressRecord{{}}
		case 2:
			r.Replicas = []job.ReplicaAnswer{{WorkerID: worker, Status: r.Status, Hash: "h"}}
		case 3:
			r.Build = &job.BuildResult{}
		}
		got, err := marshalResultRow(r)
		res := *r
		res.Result, res.Files = nil, nil
		sameJSON(t, res, got, err)

		s := r.Summary()
		sameJSON(t, s, marshalResultSummary(s), nil)
	})
}
