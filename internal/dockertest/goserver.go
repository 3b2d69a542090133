package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/docker/docker/api/types/image"
)

// GoServer is the source of the HTTP server of ImportGoServer's image. It
// listens on :$PORT (default 8080) and prints "listening on :PORT" to
// standard output. Its routes:
//
//   - /sse?n=N&ms=M: a text/event-stream of N events (default 3), "data:
//     I", each flushed, M milliseconds apart (default 200);
//   - /crash?code=C: prints "crashing with C" to stderr and exits with C
//     (default 3);
//   - /dial?addr=HOST:PORT (repeatable): tries a TCP connection to each
//     (2 s each; unix:PATH a Unix socket) and answers a JSON list of
//     {"addr", "ok", "error"};
//   - /upload: reads the body and answers {"bytes": N, "sha256": HEX};
//   - /bytes?n=N: answers N bytes (byte i is i mod 251), streamed;
//   - /status/CODE: answers that status with an empty body;
//   - /print?n=N: prints N bytes (lines of "x") to standard output;
//   - /healthz: 200, or 503 while READY_AFTER_MS has not passed since the
//     start, and always 503 with NEVER_READY set;
//   - anything else: 200 with a JSON echo {"method", "path", "query",
//     "headers", "body"} (body as base64), and each "set" query value
//     "Name:value" added as a response header.
//
// With LISTEN_AFTER_MS it waits that long before listening; with
// EXIT_AT_START=C it prints "exiting at start" and exits with C at once.
const GoServer = `package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if c := os.Getenv("EXIT_AT_START"); c != "" {
		fmt.Println("exiting at start")
		n, _ := strconv.Atoi(c)
		os.Exit(n)
	}
	if ms, _ := strconv.Atoi(os.Getenv("LISTEN_AFTER_MS")); ms > 0 {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	started := time.Now()
	readyAfter, _ := strconv.Atoi(os.Getenv("READY_AFTER_MS"))
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if os.Getenv("NEVER_READY") != "" || time.Since(started) < time.Duration(readyAfter)*time.Millisecond {
			w.WriteHeader(503)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		n, ms := 3, 200
		if v, err := strconv.Atoi(r.URL.Query().Get("n")); err == nil {
			n = v
		}
		if v, err := strconv.Atoi(r.URL.Query().Get("ms")); err == nil {
			ms = v
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		for i := 0; i < n; i++ {
			if i > 0 {
				select {
				case <-r.Context().Done():
					return
				case <-time.After(time.Duration(ms) * time.Millisecond):
				}
			}
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/crash", func(w http.ResponseWriter, r *http.Request) {
		code := 3
		if v, err := strconv.Atoi(r.URL.Query().Get("code")); err == nil {
			code = v
		}
		fmt.Fprintf(os.Stderr, "crashing with %d\n", code)
		os.Exit(code)
	})
	mux.HandleFunc("/dial", func(w http.ResponseWriter, r *http.Request) {
		type result struct {
			Addr  string ` + "`json:\"addr\"`" + `
			OK    bool   ` + "`json:\"ok\"`" + `
			Error string ` + "`json:\"error,omitempty\"`" + `
		}
		var out []result
		for _, a := range r.URL.Query()["addr"] {
			network, addr := "tcp", a
			if path, ok := strings.CutPrefix(a, "unix:"); ok {
				network, addr = "unix", path
			}
			c, err := net.DialTimeout(network, addr, 2*time.Second)
			res := result{Addr: a, OK: err == nil}
			if err != nil {
				res.Error = err.Error()
			} else {
				c.Close()
			}
			out = append(out, res)
		}
		json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			w.WriteHeader(400)
		}
		json.NewEncoder(w).Encode(map[string]any{"bytes": n, "sha256": hex.EncodeToString(h.Sum(nil))})
	})
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		buf := make([]byte, 251*128)
		for i := range buf {
			buf[i] = byte(i % 251)
		}
		for n > 0 {
			k := min(n, int64(len(buf)))
			if _, err := w.Write(buf[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	mux.HandleFunc("/print", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		line := strings.Repeat("x", 99) + "\n"
		for ; n > 0; n -= len(line) {
			os.Stdout.WriteString(line[:min(n, len(line))])
		}
	})
	mux.HandleFunc("/status/", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/status/"))
		if err != nil || code < 100 || code > 999 {
			code = 400
		}
		w.WriteHeader(code)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		for _, s := range r.URL.Query()["set"] {
			if k, v, ok := strings.Cut(s, ":"); ok {
				w.Header().Add(k, v)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"method": r.Method, "path": r.URL.Path, "query": r.URL.RawQuery,
			"headers": r.Header, "host": r.Host, "body": body,
		})
	})
	l, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("listening on :" + port)
	http.Serve(l, mux)
}
`

var goServerOnce struct {
	sync.Once
	bin []byte
	err error
}

// GoServerBinary returns a static build (CGO_ENABLED=0) of GoServer,
// built once per test process with the go command.
func GoServerBinary() ([]byte, error) {
	goServerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "zerverless-goserver-")
		if err != nil {
			goServerOnce.err = err
			return
		}
		defer os.RemoveAll(dir)
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(GoServer), 0o644); err != nil {
			goServerOnce.err = err
			return
		}
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module zerverless.test/goserver\n\ngo 1.22\n"), 0o644); err != nil {
			goServerOnce.err = err
			return
		}
		out := filepath.Join(dir, "server")
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
		if b, err := cmd.CombinedOutput(); err != nil {
			goServerOnce.err = fmt.Errorf("build the test server: %v\n%s", err, b)
			return
		}
		goServerOnce.bin, goServerOnce.err = os.ReadFile(out)
	})
	return goServerOnce.bin, goServerOnce.err
}

// ImportGoServer imports into the engine, as ref, an image holding only
// GoServerBinary at /server (its entrypoint) and /tmp with mode 1777.
func ImportGoServer(ctx context.Context, c Importer, ref string) error {
	bin, err := GoServerBinary()
	if err != nil {
		return err
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	mt := time.Unix(1700000000, 0)
	_ = tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: mt})
	_ = tw.WriteHeader(&tar.Header{Name: "server", Typeflag: tar.TypeReg, Mode: 0o555, Size: int64(len(bin)), ModTime: mt})
	_, _ = tw.Write(bin)
	if err := tw.Close(); err != nil {
		return err
	}
	rc, err := c.ImageImport(ctx, image.ImportSource{Source: &b, SourceName: "-"}, ref,
		image.ImportOptions{Changes: []string{`ENTRYPOINT ["/server"]`}})
	if err != nil {
		return err
	}
	return DrainJSON(rc)
}
