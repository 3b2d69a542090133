package docker

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// steps times the parts of one run for the debug log ("docker job
// steps"): each engine call and wait on the job's path, by name, in
// milliseconds. Parts that run at the same time are timed each on its
// own. It is safe for concurrent use; a nil *steps times nothing.
type steps struct {
	mu    sync.Mutex
	start time.Time
	attrs []slog.Attr
}

// newSteps returns a timer of a run, or nil when log does not log at
// debug level.
func newSteps(log *slog.Logger) *steps {
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		return nil
	}
	return &steps{start: time.Now()}
}

// since records the time from t0 to now as part name.
func (s *steps) since(name string, t0 time.Time) {
	if s == nil {
		return
	}
	s.add(name, time.Since(t0))
}

// add records d as part name.
func (s *steps) add(name string, d time.Duration) {
	if s == nil {
		return
	}
	ms := float64(d.Microseconds()) / 1000
	s.mu.Lock()
	s.attrs = append(s.attrs, slog.Float64(name, ms))
	s.mu.Unlock()
}

// now is time.Now, or the zero time for a nil s.
func (s *steps) now() time.Time {
	if s == nil {
		return time.Time{}
	}
	return time.Now()
}

// log writes the parts and the whole run's time at debug level.
func (s *steps) log(log *slog.Logger, jobID string, warm bool) {
	if s == nil {
		return
	}
	s.since("total", s.start)
	s.mu.Lock()
	attrs := append([]slog.Attr{slog.String("job_id", jobID), slog.Bool("warm", warm)}, s.attrs...)
	s.mu.Unlock()
	log.LogAttrs(context.Background(), slog.LevelDebug, "docker job steps", attrs...)
}
