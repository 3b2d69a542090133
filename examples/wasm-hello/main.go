// Command wasm-hello is an example Zerverless Wasm job. Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -o hello.wasm ./examples/wasm-hello
//
// It reads input_data (JSON) from stdin and greets whoever it names.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
)

func main() {
	var in struct {
		Who string `json:"who"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "input_data must be a JSON object:", err)
		os.Exit(2)
	}
	if in.Who == "" {
		in.Who = "world"
	}
	greeting := "hello"
	if slices.Contains(os.Args[1:], "--greet") {
		greeting = "greetings"
	}
	fmt.Printf("%s, %s\n", greeting, in.Who)
}
