package isolate

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// A frame is one message between a pool and its child: a 4-byte big-endian
// length, then that many bytes of JSON. The parent writes hello and task
// frames on the child's stdin and cancel frames on a second pipe, the
// child's file descriptor 3 (so that the child reads its next task and runs
// it on one goroutine, with no hand-off); the child writes ready and result
// frames on its stdout. Its stderr is free text (crash reports), kept by
// the parent for diagnosis.
type frame struct {
	// parent → child
	Hello *hello    `json:"hello,omitempty"`
	Task  *job.Task `json:"task,omitempty"`
	// Seq numbers a child's tasks; a cancel names the task it stops.
	Seq uint64 `json:"seq,omitempty"`
	// Deadline is the task's deadline (the parent's context deadline);
	// both ends are on one machine and share its clock.
	Deadline time.Time `json:"deadline,omitzero"`
	// Cancel stops the task in progress (its context is canceled).
	Cancel bool `json:"cancel,omitempty"`
	// Live, on a task frame, asks for its output as it is written
	// (output frames before the result), at most LiveBytes of it when
	// that is set.
	Live      bool  `json:"live,omitempty"`
	LiveBytes int64 `json:"live_bytes,omitempty"`

	// child → parent
	Ready bool `json:"ready,omitempty"`
	// Error is why the child could not set up its runtimes.
	Error  string      `json:"error,omitempty"`
	Result *job.Result `json:"result,omitempty"`
	// Output is output the task of Seq wrote (see Live).
	Output *outputFrame `json:"output,omitempty"`
	// Exit says that the child ends after this frame: its job went past
	// its memory bound.
	Exit bool `json:"exit,omitempty"`
}

// hello is the child's set-up, the first frame it reads.
type hello struct {
	// Init is handed to the child's build function as it is.
	Init json.RawMessage `json:"init,omitempty"`
	// HeapCheckInterval is how often the child reads its heap while a task
	// runs.
	HeapCheckInterval time.Duration `json:"heap_check_interval_ns"`
	// AddressSpaceSlackBytes is the room of the child's RLIMIT_AS above its
	// address space and twice the task's memory bound (negative: no
	// RLIMIT_AS).
	AddressSpaceSlackBytes int64 `json:"address_space_slack_bytes"`
	// MaxFrameBytes is the largest frame either end accepts.
	MaxFrameBytes int64 `json:"max_frame_bytes"`
	// GCPercent is the child's garbage collection target (0: Go's).
	GCPercent int `json:"gc_percent,omitempty"`
}

func writeFrame(w io.Writer, f *frame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode frame: %w", err)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

// readFrame reads one frame of at most limit bytes.
func readFrame(r io.Reader, limit int64) (*frame, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int64(binary.BigEndian.Uint32(hdr[:]))
	if n > limit {
		return nil, fmt.Errorf("frame of %d bytes is larger than the limit of %d", n, limit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read frame: %w", err)
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("decode frame: %w", err)
	}
	return &f, nil
}
