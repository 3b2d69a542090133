package orchestrator

import (
	"strings"
	"testing"

	"github.com/zerverless/zerverless/internal/job"
)

// TestServiceLogLines: output becomes events of whole lines of one
// instance and stream, a line held until it ends (or grows too long, or
// its instance ends).
func TestServiceLogLines(t *testing.T) {
	l := newServiceLog(1 << 20)
	l.output("aaaaaaaaaa", job.LogStdout, "one\ntw", 0)
	l.output("bbbbbbbbbb", job.LogStdout, "b's\n", 3)
	l.output("aaaaaaaaaa", job.LogStderr, "err", 0)
	l.output("aaaaaaaaaa", job.LogStdout, "o\n", 0)
	l.output("aaaaaaaaaa", job.LogStdout, strings.Repeat("x", maxPartialLine+1), 0)
	l.flush("aaaaaaaaaa")
	var got []string
	for _, ev := range l.events {
		got = append(got, ev.Instance[:1]+" "+string(ev.Stream)+" "+strings.ReplaceAll(ev.Text, strings.Repeat("x", maxPartialLine+1), "X"))
	}
	want := []string{"a stdout one\n", "b stdout b's\n", "a stdout two\n", "a stdout X", "a stderr err\n"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("events %q, want %q", got, want)
	}
	if l.events[1].Dropped != 3 {
		t.Errorf("dropped %d, want 3", l.events[1].Dropped)
	}
	if txt := l.text(); !strings.HasPrefix(txt, "[aaaaaaaa] one\n[bbbbbbbb] b's\n[aaaaaaaa] two\n") {
		t.Errorf("text %q", txt)
	}
}

// TestServiceLogSince: a follower gets the events after its last; one
// behind by more than its bound, or resuming before what the log holds,
// gets a gap first (with the count when it is known); one past the log's
// end gets the end.
func TestServiceLogSince(t *testing.T) {
	l := newServiceLog(10 * (serviceLogEventCost + 10))
	for i := range 20 {
		l.output("i", job.LogStdout, strings.Repeat(string(rune('a'+i)), 9)+"\n", 0)
	}
	if len(l.events) != 10 {
		t.Fatalf("%d events kept, want 10", len(l.events))
	}
	first, last := l.events[0].Seq, l.events[9].Seq
	evs, gap, end, _ := l.since(last-2, 1<<20)
	if len(evs) != 2 || gap != nil || end != nil || evs[0].Seq != last-1 {
		t.Fatalf("after last-2: %d events, gap %+v, end %+v", len(evs), gap, end)
	}
	// Evicted: the 10 oldest were dropped.
	evs, gap, _, _ = l.since(l.start, 1<<20)
	if gap == nil || gap.Stream != job.LogDropped || gap.Missed != int64(first-l.start-1) || gap.Seq != first-1 || len(evs) != 10 {
		t.Fatalf("after the first event: gap %+v, %d events", gap, len(evs))
	}
	// Before this log began (another orchestrator's): not counted.
	if _, gap, _, _ = l.since(l.start-5, 1<<20); gap == nil || gap.Missed != 0 {
		t.Fatalf("from before the log: gap %+v", gap)
	}
	// Behind by more than the bound: the newest that fit, after a gap.
	evs, gap, _, _ = l.since(first-1, 25)
	if len(evs) != 2 || gap == nil || gap.Missed != 8 || gap.Dropped != 80 || gap.Seq != last-2 {
		t.Fatalf("a slow follower: %d events, gap %+v", len(evs), gap)
	}
	// From the future: all of it.
	if evs, _, _, _ = l.since(last+100, 1<<20); len(evs) != 10 {
		t.Fatalf("from the future: %d events", len(evs))
	}
	l.end("gone")
	l.output("i", job.LogStdout, "after the end\n", 0)
	evs, _, end, _ = l.since(last, 1<<20)
	if len(evs) != 0 || end == nil || end.Reason != "gone" || end.Stream != job.LogEnd || end.Seq <= last {
		t.Fatalf("after the end: %d events, end %+v", len(evs), end)
	}
}
