package agent

import (
	"encoding/binary"
	"io"
)

// yamux's frame header (github.com/hashicorp/yamux, const.go): version,
// type, flags, stream id, length.
const (
	frameHeaderSize = 12
	frameTypeData   = 0
)

// FrameConn returns c for a yamux session to write its frames on: the
// session writes a data frame's header and its body in two calls, which
// FrameConn joins into one write of c (over a WebSocket, one message
// instead of two; over a pipe or a socket, one system call on each side).
// Other writes go through as they are. Only the session's send loop may
// write to it (one goroutine).
func FrameConn(c io.ReadWriteCloser) io.ReadWriteCloser { return &frameConn{ReadWriteCloser: c} }

type frameConn struct {
	io.ReadWriteCloser
	held bool
	buf  []byte
}

func (c *frameConn) Write(p []byte) (int, error) {
	if !c.held && len(p) == frameHeaderSize && p[1] == frameTypeData && binary.BigEndian.Uint32(p[8:]) > 0 {
		c.buf = append(c.buf[:0], p...)
		c.held = true
		return len(p), nil
	}
	if !c.held {
		return c.ReadWriteCloser.Write(p)
	}
	c.held = false
	c.buf = append(c.buf, p...)
	if cap(c.buf) > 1<<20 {
		defer func() { c.buf = nil }()
	}
	if _, err := c.ReadWriteCloser.Write(c.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}
