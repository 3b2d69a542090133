package docker

import (
	"bytes"
	"encoding/json"
	"io"

	"github.com/zerverless/zerverless/internal/agent"
)

// The exec agent's report (agent.Report): a warm job's end, read from its
// attach stream.
//
// A prewarmed container's agent is asked (agent.Job.Report, a secret
// made for the job) to stay the job's parent and to write, once the job
// exits, a line that ends the job's standard output and, on its standard
// error, the same line, how the job ended, and an archive of /output.
// The run takes its result from that when it can, without waiting for
// the engine to handle the container's exit, inspecting it, or reading
// /output through the engine's archive call (a copy process of the
// engine's and mounts on every call). It can when the report is whole,
// the job exited rather than being killed by a signal, and the job's
// cgroup is visible, so that an OOM kill of any of its processes is
// seen (Config.CgroupRoot); otherwise the run waits for the engine as a
// cold one does. The report is the agent's alone: the job cannot learn
// the secret. What it says — the job's exit status and /output — the job
// decides anyway; the limits, the OOM kills, the run time and the usage
// are this worker's own figures.

// inlineOutputBytes bounds the archive of /output a report carries; a
// larger /output is read through the engine.
const inlineOutputBytes = 1 << 20

// reportReader takes the agent's report out of a warm job's streams:
// its stdout and stderr pass the job's bytes on and keep the report.
// Both are written by one goroutine (the stream's copy); done is closed
// when the report is whole, after which neither writes on.
type reportReader struct {
	stdout, stderr *markerCut
	done           chan struct{}
	closed         bool
	failed         bool
	report         agent.Report
	archive        []byte
}

func newReportReader(stdout, stderr io.Writer, secret string) *reportReader {
	marker := []byte(agent.ReportMarker + secret + "\n")
	r := &reportReader{done: make(chan struct{})}
	r.stdout = &markerCut{w: stdout, marker: marker, changed: r.check}
	r.stderr = &markerCut{w: stderr, marker: marker, limit: inlineOutputBytes + 64<<10, changed: r.check}
	return r
}

// check closes done once both streams reached the marker and stderr
// holds the whole report.
func (r *reportReader) check() {
	if r.closed || r.failed || !r.stdout.seen || !r.stderr.seen {
		return
	}
	if r.stderr.over {
		r.failed = true
		return
	}
	rest := r.stderr.after
	i := bytes.IndexByte(rest, '\n')
	if i < 0 {
		return
	}
	var rep agent.Report
	if err := json.Unmarshal(rest[:i], &rep); err != nil || rep.TarBytes < 0 || rep.TarBytes > inlineOutputBytes ||
		(rep.Output != "inline" && rep.Output != "engine") || (rep.Output == "engine" && rep.TarBytes != 0) {
		r.failed = true
		return
	}
	if len(rest)-i-1 < rep.TarBytes {
		return
	}
	r.report, r.archive = rep, rest[i+1:i+1+rep.TarBytes]
	r.stderr.limit = len(r.stderr.after) // nothing more is kept
	r.closed = true
	close(r.done)
}

// flush passes on what each stream held back, at the stream's end.
func (r *reportReader) flush() {
	r.stdout.flush()
	r.stderr.flush()
}

// markerCut passes what is written to w up to marker, and keeps what
// follows it, up to limit bytes (over says there was more). A tail that
// may begin the marker is held back until the next write tells.
type markerCut struct {
	w       io.Writer
	marker  []byte
	limit   int
	changed func()

	hold  []byte
	seen  bool
	after []byte
	over  bool
}

func (m *markerCut) Write(b []byte) (int, error) {
	n := len(b)
	if m.seen {
		m.keep(b)
		return n, nil
	}
	data := b
	if len(m.hold) > 0 {
		data = append(m.hold, b...)
		m.hold = nil
	}
	if i := bytes.Index(data, m.marker); i >= 0 {
		if _, err := m.w.Write(data[:i]); err != nil {
			return 0, err
		}
		m.seen = true
		m.keep(data[i+len(m.marker):])
		return n, nil
	}
	k := partialSuffix(data, m.marker)
	if _, err := m.w.Write(data[:len(data)-k]); err != nil {
		return 0, err
	}
	if k > 0 {
		m.hold = append([]byte(nil), data[len(data)-k:]...)
	}
	return n, nil
}

func (m *markerCut) keep(b []byte) {
	if room := m.limit - len(m.after); len(b) > room {
		b, m.over = b[:max(room, 0)], true
	}
	m.after = append(m.after, b...)
	m.changed()
}

func (m *markerCut) flush() {
	if !m.seen && len(m.hold) > 0 {
		_, _ = m.w.Write(m.hold)
		m.hold = nil
	}
}

// partialSuffix is the length of the longest end of data that begins
// marker (and is shorter than it).
func partialSuffix(data, marker []byte) int {
	for k := min(len(data), len(marker)-1); k > 0; k-- {
		if bytes.HasSuffix(data, marker[:k]) {
			return k
		}
	}
	return 0
}
