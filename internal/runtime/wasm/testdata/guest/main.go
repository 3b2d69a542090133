// Command guest is the WASI module the wasm runtime's tests run. Its first
// argument picks what it does. Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -o guest.wasm
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"unsafe"
)

//go:wasmimport zerverless set_result
func setResult(ptr unsafe.Pointer, n uint32)

// result sets the job's returned value to v, as JSON.
func result(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	rawResult(b)
}

func rawResult(b []byte) {
	if len(b) == 0 {
		setResult(nil, 0)
		return
	}
	setResult(unsafe.Pointer(&b[0]), uint32(len(b)))
}

func main() {
	mode := ""
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	switch mode {
	case "success":
		data, err := io.ReadAll(os.Stdin)
		if err != nil {
			fail(err)
		}
		if env := os.Getenv("INPUT_DATA"); env != string(data) {
			fail(fmt.Errorf("INPUT_DATA %q differs from stdin %q", env, data))
		}
		var in struct{ X int }
		if err := json.Unmarshal(data, &in); err != nil {
			fail(err)
		}
		fmt.Println("hello from wasm")
		result(in.X * 2)
	case "error":
		fmt.Fprintln(os.Stderr, "boom: something broke")
		os.Exit(3)
	case "panic":
		panic("guest panic")
	case "live":
		fmt.Println("first")
		for {
		}
	case "loop":
		for {
		}
	case "flood":
		line := []byte(strings.Repeat("x", 1023) + "\n")
		for range 2048 {
			os.Stdout.Write(line)
		}
	case "hog":
		var keep [][]byte
		for {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			keep = append(keep, b)
		}
	case "args":
		result(os.Args)
	case "environ":
		result(os.Environ())
	case "files":
		// Every way to reach the host's files must fail.
		var reached []string
		for _, p := range []string{"/etc/passwd", "/", ".", "/proc/self/environ", "../../../../etc/passwd"} {
			if _, err := os.ReadFile(p); err == nil {
				reached = append(reached, "read "+p)
			}
			if _, err := os.ReadDir(p); err == nil {
				reached = append(reached, "list "+p)
			}
		}
		if err := os.WriteFile("/tmp/zerverless-wasm-escape", []byte("x"), 0o644); err == nil {
			reached = append(reached, "write /tmp")
		}
		result(reached)
	case "bad-result":
		rawResult([]byte("{not json"))
	case "big-result":
		result(strings.Repeat("y", 4096))
	case "exit0":
		fmt.Println("bye")
		os.Exit(0)
	default:
		fail(fmt.Errorf("unknown mode %q", mode))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
