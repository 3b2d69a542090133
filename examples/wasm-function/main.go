// Command wasm-function is a Zerverless function as a WASI module: it reads
// the request as JSON on stdin and writes the response as JSON on stdout.
//
//	GOOS=wasip1 GOARCH=wasm go build -o hello-fn.wasm ./examples/wasm-function
package main

import (
	"encoding/json"
	"os"
)

type request struct {
	Method string            `json:"method"`
	Path   string            `json:"path"`
	Query  map[string]string `json:"query"`
	Env    map[string]string `json:"env"`
}

type response struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    any               `json:"body"`
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		os.Stderr.WriteString("bad request: " + err.Error() + "\n")
		os.Exit(1)
	}
	name := req.Query["name"]
	if name == "" {
		name = "world"
	}
	json.NewEncoder(os.Stdout).Encode(response{
		Status: 200,
		Body:   map[string]string{"greeting": "hello " + name, "path": req.Path},
	})
}
