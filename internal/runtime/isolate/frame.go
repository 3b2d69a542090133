package isolate

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// A frame is one message between a pool and its child. The parent writes
// hello and task frames on the child's stdin and cancel frames on a second
// pipe, the child's file descriptor 3 (so that the child reads its next
// task and runs it on one goroutine, with no hand-off); the child writes
// ready, error and result frames on its stdout. Its stderr is free text
// (crash reports), kept by the parent for diagnosis.
//
// On the wire a frame is a 4-byte big-endian length, then that many bytes:
// a kind byte and the kind's fields in a fixed order (see appendFrame).
// Integers are varints, strings and byte slices a length and their bytes;
// the hello, and the fields that Lua and JavaScript tasks never carry (a
// docker spec, a build report, replicas), are JSON. A frame is written with
// one write(2), and read through a buffered reader, most often with one
// read(2).
type frame struct {
	// parent → child
	Hello *hello
	Task  *job.Task
	// Seq numbers a child's tasks; a cancel names the task it stops.
	Seq uint64
	// Deadline is the task's deadline (the parent's context deadline);
	// both ends are on one machine and share its clock.
	Deadline time.Time
	// Cancel stops the task in progress (its context is canceled).
	Cancel bool
	// Live, on a task frame, asks for its output as it is written
	// (output frames before the result), at most LiveBytes of it when
	// that is set.
	Live      bool
	LiveBytes int64

	// child → parent
	Ready bool
	// Error is why the child could not set up its runtimes or run a task.
	Error  string
	Result *job.Result
	// Output is output the task of Seq wrote (see Live).
	Output *outputFrame
	// Exit says that the child ends after this frame: its job went past
	// its memory bound.
	Exit bool
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
	// Procs is the child's GOMAXPROCS (0: Go's).
	Procs int `json:"procs,omitempty"`
}

// Frame kinds, the first byte of a frame.
const (
	kindHello byte = iota + 1
	kindTask
	kindCancel
	kindReady
	kindError
	kindResult
	kindResultExit // a result after which the child ends
	kindOutput     // output of a running task (Live)
)

// frameWriter writes frames to one stream, reusing its buffer. It is not
// safe for concurrent use.
type frameWriter struct {
	w   io.Writer
	buf []byte
}

func (fw *frameWriter) write(f *frame) error {
	b, err := appendFrame(fw.buf[:0], f)
	if err != nil {
		return err
	}
	if len(b)-4 > math.MaxUint32 {
		return fmt.Errorf("encode frame: %d bytes is too large", len(b)-4)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	_, err = fw.w.Write(b)
	if cap(b) <= maxKeptBuffer {
		fw.buf = b
	}
	return err
}

// maxKeptBuffer is the largest buffer a frameWriter or frameReader keeps
// for the next frame; a larger one (a task with large code or a result
// with large output) is left to the garbage collector.
const maxKeptBuffer = 256 << 10

// writeFrame writes one frame with a buffer of its own.
func writeFrame(w io.Writer, f *frame) error {
	return (&frameWriter{w: w}).write(f)
}

// appendFrame appends f's length placeholder and encoding to b.
func appendFrame(b []byte, f *frame) ([]byte, error) {
	b = append(b, 0, 0, 0, 0)
	switch {
	case f.Hello != nil:
		h, err := json.Marshal(*f.Hello) // a copy: f and what it points at do not escape
		if err != nil {
			return nil, fmt.Errorf("encode frame: %w", err)
		}
		b = append(append(b, kindHello), h...)
	case f.Task != nil:
		b = append(b, kindTask)
		b = binary.AppendUvarint(b, f.Seq)
		b = appendTime(b, f.Deadline)
		b = append(b, boolByte(f.Live))
		b = binary.AppendVarint(b, f.LiveBytes)
		return appendTask(b, f.Task)
	case f.Output != nil:
		b = append(b, kindOutput)
		b = binary.AppendUvarint(b, f.Seq)
		b = appendString(b, string(f.Output.Stream))
		b = appendBytes(b, f.Output.Data)
		b = binary.AppendVarint(b, f.Output.Dropped)
	case f.Cancel:
		b = append(b, kindCancel)
		b = binary.AppendUvarint(b, f.Seq)
	case f.Ready:
		b = append(b, kindReady)
	case f.Result != nil:
		k := kindResult
		if f.Exit {
			k = kindResultExit
		}
		return appendResult(append(b, k), f.Result)
	case f.Error != "":
		b = appendString(append(b, kindError), f.Error)
	default:
		return nil, errors.New("encode frame: an empty frame")
	}
	return b, nil
}

func appendTask(b []byte, t *job.Task) ([]byte, error) {
	b = appendString(b, t.JobID)
	b = appendString(b, t.LeaseID)
	b = binary.AppendVarint(b, int64(t.Attempt))
	b = appendString(b, t.Namespace)
	b = appendString(b, string(t.Type))
	b = binary.AppendVarint(b, int64(t.Timeout))
	b = binary.AppendVarint(b, int64(t.Limits.OutputBytes))
	b = binary.AppendVarint(b, t.Limits.MemoryBytes)
	sp := &t.Spec
	b = appendString(b, sp.Code)
	b = appendBytes(b, sp.Wasm)
	b = binary.AppendUvarint(b, uint64(len(sp.Args)))
	for _, a := range sp.Args {
		b = appendString(b, a)
	}
	b = append(b, boolByte(sp.Args != nil))
	b = appendBytes(b, sp.Input)
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(sp.TimeoutSeconds))
	b = binary.AppendVarint(b, int64(sp.MemoryMB))
	b = binary.AppendVarint(b, int64(sp.Replicas))
	b = binary.AppendVarint(b, int64(sp.Quorum))
	return appendJSON(b, sp.Docker != nil, sp.Docker)
}

func appendResult(b []byte, r *job.Result) ([]byte, error) {
	b = appendString(b, string(r.Status))
	b = appendString(b, r.Output)
	b = appendString(b, r.Stderr)
	b = appendBytes(b, r.Result)
	b = appendString(b, r.Error)
	b = binary.AppendVarint(b, int64(r.ExitCode))
	b = binary.AppendVarint(b, r.DurationMS)
	b = append(b, boolByte(r.Truncated)|boolByte(r.OOMKilled)<<1|boolByte(r.WarmStart)<<2)
	b = binary.AppendVarint(b, r.PeakMemoryBytes)
	b = binary.AppendVarint(b, r.CPUTimeMS)
	b = binary.AppendVarint(b, int64(r.Attempt))
	b = appendString(b, r.WorkerID)
	var err error
	if b, err = appendJSON(b, r.Files != nil, r.Files); err != nil {
		return nil, err
	}
	if b, err = appendJSON(b, r.Build != nil, r.Build); err != nil {
		return nil, err
	}
	if b, err = appendJSON(b, r.Egress != nil, r.Egress); err != nil {
		return nil, err
	}
	return appendJSON(b, r.Replicas != nil, r.Replicas)
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// appendBytes keeps nil apart from empty: its length is stored plus one,
// 0 for nil.
func appendBytes(b, v []byte) []byte {
	if v == nil {
		return append(b, 0)
	}
	return append(binary.AppendUvarint(b, uint64(len(v))+1), v...)
}

// appendTime stores the zero time as 0, any other as its Unix nanoseconds
// plus one (the frames' times are deadlines, after 1970).
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	return binary.AppendUvarint(b, uint64(t.UnixNano())+1)
}

// appendJSON stores v as JSON when present, else nothing (as appendBytes
// stores nil): present says that v is not a nil pointer, map or slice.
func appendJSON(b []byte, present bool, v any) ([]byte, error) {
	if !present {
		return append(b, 0), nil
	}
	j, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode frame: %w", err)
	}
	return appendBytes(b, j), nil
}

// frameReader reads frames from one stream through a buffer. It is not
// safe for concurrent use.
type frameReader struct {
	r   *bufio.Reader
	buf []byte
	// code is the code of the last task read: a task of the same code
	// shares its string (a child runs one function's code again and again;
	// its runtime's cache of compiled code then compares the code as one
	// string with itself).
	code string
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 16<<10)}
}

// read reads one frame of at most limit bytes. Nothing of the frame it
// returns refers to the reader's buffer.
func (fr *frameReader) read(limit int64) (*frame, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(fr.r, hdr[:]); err != nil {
		return nil, err
	}
	n := int64(binary.BigEndian.Uint32(hdr[:]))
	if n > limit {
		return nil, fmt.Errorf("frame of %d bytes is larger than the limit of %d", n, limit)
	}
	b := fr.buf
	if int64(cap(b)) < n {
		b = make([]byte, n)
	}
	b = b[:n]
	if _, err := io.ReadFull(fr.r, b); err != nil {
		return nil, fmt.Errorf("read frame: %w", err)
	}
	if cap(b) <= maxKeptBuffer {
		fr.buf = b
	}
	f, err := decodeFrameCode(b, &fr.code)
	if err != nil {
		return nil, fmt.Errorf("decode frame: %w", err)
	}
	return f, nil
}

func decodeFrame(b []byte) (*frame, error) { return decodeFrameCode(b, nil) }

// decodeFrameCode is decodeFrame, giving a task's code the string *code
// when they are equal, and keeping the task's code in *code (code may be
// nil).
func decodeFrameCode(b []byte, code *string) (*frame, error) {
	if len(b) == 0 {
		return nil, errors.New("an empty frame")
	}
	d := &decoder{b: b[1:], code: code}
	f := &frame{}
	switch b[0] {
	case kindHello:
		f.Hello = new(hello)
		if err := json.Unmarshal(d.b, f.Hello); err != nil {
			return nil, err
		}
		d.b = nil
	case kindTask:
		f.Seq = d.uvarint()
		f.Deadline = d.time()
		f.Live = d.byte() != 0
		f.LiveBytes = d.varint()
		f.Task = d.task()
	case kindOutput:
		f.Seq = d.uvarint()
		f.Output = &outputFrame{Stream: job.LogStream(d.string()), Data: d.bytes(), Dropped: d.varint()}
	case kindCancel:
		f.Cancel = true
		f.Seq = d.uvarint()
	case kindReady:
		f.Ready = true
	case kindError:
		f.Error = d.string()
	case kindResult, kindResultExit:
		f.Exit = b[0] == kindResultExit
		f.Result = d.result()
	default:
		return nil, fmt.Errorf("unknown frame kind %d", b[0])
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) > 0 {
		return nil, fmt.Errorf("%d bytes after the frame's fields", len(d.b))
	}
	return f, nil
}

// decoder reads the fields appendFrame wrote. Its first error sticks: every
// read after it returns a zero value.
type decoder struct {
	b   []byte
	err error
	// code, when not nil, is the code of the last task decoded (see
	// frameReader.code).
	code *string
}

var errShort = errors.New("the frame ends inside a field")

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int() int { return int(d.varint()) }

func (d *decoder) float64() float64 {
	b := d.take(8)
	if len(b) < 8 {
		return 0
	}
	return math.Float64frombits(binary.BigEndian.Uint64(b))
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = errShort
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// take returns the next n bytes, which still refer to the frame's buffer.
func (d *decoder) take(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errShort
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.take(d.uvarint())) }

// codeString is string for a task's code: the last task's code string
// when the code is the same.
func (d *decoder) codeString() string {
	b := d.take(d.uvarint())
	if d.code == nil {
		return string(b)
	}
	if string(b) != *d.code {
		*d.code = string(b)
	}
	return *d.code
}

// bytes is appendBytes's slice, copied out of the frame's buffer.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n == 0 || d.err != nil {
		return nil
	}
	return append([]byte{}, d.take(n-1)...)
}

func (d *decoder) time() time.Time {
	v := d.uvarint()
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(v-1))
}

// json decodes appendJSON's value into v, left as it is for nil.
func (d *decoder) json(v any) {
	n := d.uvarint()
	if n == 0 || d.err != nil {
		return
	}
	if err := json.Unmarshal(d.take(n-1), v); err != nil && d.err == nil {
		d.err = err
	}
}

func (d *decoder) task() *job.Task {
	t := &job.Task{}
	t.JobID = d.string()
	t.LeaseID = d.string()
	t.Attempt = d.int()
	t.Namespace = d.string()
	t.Type = job.Type(d.string())
	t.Timeout = time.Duration(d.varint())
	t.Limits.OutputBytes = d.int()
	t.Limits.MemoryBytes = d.varint()
	sp := &t.Spec
	sp.Code = d.codeString()
	sp.Wasm = d.bytes()
	nargs := d.uvarint()
	if nargs > uint64(len(d.b)) { // each takes a byte at least
		d.err = errShort
		return t
	}
	args := make([]string, 0, nargs)
	for range nargs {
		args = append(args, d.string())
	}
	if d.byte() == 1 {
		sp.Args = args
	}
	sp.Input = d.bytes()
	sp.TimeoutSeconds = d.float64()
	sp.MemoryMB = d.int()
	sp.Replicas = d.int()
	sp.Quorum = d.int()
	d.json(&sp.Docker)
	return t
}

func (d *decoder) result() *job.Result {
	r := &job.Result{}
	r.Status = job.Status(d.string())
	r.Output = d.string()
	r.Stderr = d.string()
	r.Result = d.bytes()
	r.Error = d.string()
	r.ExitCode = d.int()
	r.DurationMS = d.varint()
	flags := d.byte()
	r.Truncated, r.OOMKilled, r.WarmStart = flags&1 != 0, flags&2 != 0, flags&4 != 0
	r.PeakMemoryBytes = d.varint()
	r.CPUTimeMS = d.varint()
	r.Attempt = d.int()
	r.WorkerID = d.string()
	d.json(&r.Files)
	d.json(&r.Build)
	d.json(&r.Egress)
	d.json(&r.Replicas)
	return r
}
