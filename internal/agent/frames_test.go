package agent

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/hashicorp/yamux"
)

// countConn counts the writes to its connection.
type countConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// A data frame goes in one write, header and body; the bytes are
// yamux's, unchanged.
func TestFrameConnJoinsDataFrames(t *testing.T) {
	a, b := net.Pipe()
	cc := &countConn{Conn: a}
	client, err := yamux.Client(FrameConn(cc), YamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := yamux.Server(b, YamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	got := make(chan []byte, 1)
	go func() {
		st, err := server.AcceptStream()
		if err != nil {
			got <- nil
			return
		}
		b, _ := io.ReadAll(st)
		got <- b
	}()
	st, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte("0123456789"), 1000)
	for i := 0; i < len(want); i += 1000 {
		cc.mu.Lock()
		before := cc.writes
		cc.mu.Unlock()
		if _, err := st.Write(want[i : i+1000]); err != nil {
			t.Fatal(err)
		}
		cc.mu.Lock()
		n := cc.writes - before
		cc.mu.Unlock()
		if n != 1 {
			t.Fatalf("a data frame took %d writes", n)
		}
	}
	st.Close()
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("got %d bytes, want %d", len(b), len(want))
	}
}
