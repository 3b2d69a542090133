package isolate

import (
	"bytes"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/zerverless/zerverless/internal/job"
)

// fill sets every field reachable from v (a pointer) to a value that is not
// zero, so that a field the frame encoding forgets is seen.
func fill(t testing.TB, v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), n)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(t, v.Field(i), n)
			}
		}
	case reflect.String:
		v.SetString("s" + string(rune('a'+*n%26)))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(int64(*n) * 1000003)
	case reflect.Float64:
		v.SetFloat(float64(*n) + 0.25)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			// JSON values (input, result) must be valid JSON.
			v.SetBytes([]byte(`{"n":` + string(rune('0'+*n%10)) + `}`))
			return
		}
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fill(t, s.Index(i), n)
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(t, k, n)
		fill(t, e, n)
		m.SetMapIndex(k, e)
		v.Set(m)
	default:
		t.Fatalf("fill: no value for a %s", v.Type())
	}
}

func roundTrip(t *testing.T, f *frame) *frame {
	t.Helper()
	var buf bytes.Buffer
	if err := writeFrame(&buf, f); err != nil {
		t.Fatal(err)
	}
	got, err := newFrameReader(&buf).read(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// Every field of a task and of a result crosses a frame as it was.
func TestFrameRoundTrip(t *testing.T) {
	var task job.Task
	var res job.Result
	n := 0
	fill(t, reflect.ValueOf(&task).Elem(), &n)
	fill(t, reflect.ValueOf(&res).Elem(), &n)
	deadline := time.Now().Add(time.Minute)

	got := roundTrip(t, &frame{Task: &task, Seq: 7, Deadline: deadline})
	if got.Task == nil || !reflect.DeepEqual(*got.Task, task) {
		t.Errorf("task:\n got %+v\nwant %+v", got.Task, task)
	}
	if got.Seq != 7 || !got.Deadline.Equal(deadline) {
		t.Errorf("seq %d deadline %v, want 7 %v", got.Seq, got.Deadline, deadline)
	}
	for _, exit := range []bool{false, true} {
		got = roundTrip(t, &frame{Result: &res, Exit: exit})
		if got.Result == nil || !reflect.DeepEqual(*got.Result, res) || got.Exit != exit {
			t.Errorf("result (exit %v):\n got %+v\nwant %+v", exit, got.Result, res)
		}
	}

	// Nil and empty stay apart; the zero deadline stays zero.
	empty := job.Task{Spec: job.Spec{Args: []string{}, Wasm: []byte{}}}
	got = roundTrip(t, &frame{Task: &empty, Seq: 1})
	if !reflect.DeepEqual(*got.Task, empty) || !got.Deadline.IsZero() {
		t.Errorf("empty task: got %+v deadline %v", got.Task, got.Deadline)
	}
	got = roundTrip(t, &frame{Result: &job.Result{}})
	if !reflect.DeepEqual(*got.Result, job.Result{}) {
		t.Errorf("empty result: got %+v", got.Result)
	}

	h := hello{Init: []byte(`{"a":1}`), HeapCheckInterval: time.Second, AddressSpaceSlackBytes: -1, MaxFrameBytes: 1 << 20, GCPercent: 50}
	for _, f := range []frame{{Hello: &h}, {Cancel: true, Seq: 9}, {Ready: true}, {Error: "no such runtime"}} {
		if got := roundTrip(t, &f); !reflect.DeepEqual(*got, f) {
			t.Errorf("got %+v, want %+v", got, f)
		}
	}
}

// A cut or padded frame is an error, never a panic or a frame.
func TestFrameCutIsAnError(t *testing.T) {
	var task job.Task
	n := 0
	fill(t, reflect.ValueOf(&task).Elem(), &n)
	b, err := appendFrame(nil, &frame{Task: &task, Seq: 3, Deadline: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	body := b[4:]
	for i := range len(body) {
		if f, err := decodeFrame(body[:i]); err == nil {
			t.Fatalf("a frame cut at %d of %d bytes decoded: %+v", i, len(body), f)
		}
	}
	if _, err := decodeFrame(append(body, 0)); err == nil {
		t.Fatal("a frame with a byte after its fields decoded")
	}
}

func FuzzDecodeFrame(f *testing.F) {
	var res job.Result
	n := 0
	fill(f, reflect.ValueOf(&res).Elem(), &n)
	b, _ := appendFrame(nil, &frame{Result: &res})
	f.Add(b[4:])
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeFrame(b)
		if err != nil {
			return
		}
		// What decodes encodes again, to the same frame.
		again, err := appendFrame(nil, fr)
		if err != nil {
			return
		}
		if fr2, err := decodeFrame(again[4:]); err != nil || !reflect.DeepEqual(fr, fr2) {
			t.Fatalf("re-encoded frame: %+v %v, want %+v", fr2, err, fr)
		}
	})
}

// A reader gives tasks of the same code one string, and a task of other
// code its own.
func TestFrameReaderSharesTheCode(t *testing.T) {
	var buf bytes.Buffer
	for _, code := range []string{"return 1", "return 1", "return 2", "return 2", "return 1"} {
		if err := writeFrame(&buf, &frame{Task: &job.Task{Spec: job.Spec{Code: code}}}); err != nil {
			t.Fatal(err)
		}
	}
	r := newFrameReader(&buf)
	var prev string
	for i, want := range []string{"return 1", "return 1", "return 2", "return 2", "return 1"} {
		f, err := r.read(1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		got := f.Task.Spec.Code
		if got != want {
			t.Fatalf("task %d: code %q, want %q", i, got, want)
		}
		if same := i > 0 && unsafe.StringData(got) == unsafe.StringData(prev); same != (i == 1 || i == 3) {
			t.Errorf("task %d: shares the string of the task before: %v", i, same)
		}
		prev = got
	}
}
