package job

import "time"

// LogStream names what a log event carries: a guest's stdout or stderr,
// or a change of the job's status.
type LogStream string

const (
	LogStdout LogStream = "stdout"
	LogStderr LogStream = "stderr"
	LogStatus LogStream = "status"
)

// Known reports whether s is a stream the platform knows.
func (s LogStream) Known() bool { return s == LogStdout || s == LogStderr || s == LogStatus }

// LogEvent is one entry of a job's log. Seq numbers a job's events from 1,
// in order, across attempts and orchestrator restarts.
type LogEvent struct {
	Seq    uint64    `json:"seq"`
	Stream LogStream `json:"stream"`
	Time   time.Time `json:"time"`
	// Text is the output written (stdout, stderr).
	Text string `json:"text,omitempty"`
	// Status, Attempt and Reason describe the job at a status event.
	Status  Status `json:"status,omitempty"`
	Attempt int    `json:"attempt,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Restarted, on a status event, says that the attempt before this one
	// was lost (its worker went away or its lease expired) and the job
	// runs again.
	Restarted bool `json:"restarted,omitempty"`
	// Dropped, on an output event, counts output bytes of the attempt
	// left out of the log before this event (the log's bounds).
	Dropped int64 `json:"dropped,omitempty"`
}

// Ends reports whether e is the last event of its job's log: a status
// event with a terminal status.
func (e LogEvent) Ends() bool { return e.Stream == LogStatus && e.Status.Terminal() }
