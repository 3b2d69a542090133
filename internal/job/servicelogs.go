package job

import "time"

// ServiceLogEvent is one event of a docker service's live log (GET
// /api/deploy/{namespace}/{path}/logs?follow=true): output of one of its
// instances (Stream stdout or stderr, Text whole lines but at the end of
// an instance or for a very long line), a gap (Stream "dropped": events
// the follower missed, Missed of them when known, and Dropped bytes), or
// the end of the log (Stream "end", Reason: the service was undeployed,
// the orchestrator shuts down).
type ServiceLogEvent struct {
	// Seq orders the events of one service's log; it grows across
	// orchestrator restarts (it starts from the time the log began), so
	// that a client resuming with an older Seq is told what it missed.
	Seq      uint64    `json:"seq"`
	Stream   LogStream `json:"stream"`
	Instance string    `json:"instance,omitempty"`
	Time     time.Time `json:"time"`
	Text     string    `json:"text,omitempty"`
	// Dropped counts output bytes left out before this event: by the
	// instance's worker (its output rate bound), by the log's bounds, or
	// (on a dropped event) those the follower missed.
	Dropped int64 `json:"dropped,omitempty"`
	// Missed, on a dropped event, counts the events the follower missed
	// (0: not known, as after an orchestrator restart).
	Missed int64  `json:"missed,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// The streams of a service log event beyond stdout and stderr.
const (
	LogDropped LogStream = "dropped"
	LogEnd     LogStream = "end"
)
