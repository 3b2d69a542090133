// Package protocoltest holds protocol-level helpers for tests that act as
// a misbehaving peer: a WebSocket spoken by hand, so that a test can send
// what no well-behaved client would (a frame that never ends). It is
// imported only by tests.
package protocoltest

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// RawWS is a client WebSocket over a plain TCP connection, upgraded by
// hand. Its methods write frames piece by piece.
type RawWS struct {
	Conn net.Conn
	br   *bufio.Reader
	mask [4]byte
	sent int64 // payload bytes of the current frame written
}

// DialRawWS connects to addr (host:port), from local address src when it
// is not "", and upgrades path to a WebSocket. The caller closes Conn.
func DialRawWS(addr, src, path string) (*RawWS, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	var key [16]byte
	rand.Read(key[:])
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n",
		path, addr, base64.StdEncoding.EncodeToString(key[:]))
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	c.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, fmt.Errorf("upgrade: status %d", resp.StatusCode)
	}
	r := &RawWS{Conn: c, br: br}
	rand.Read(r.mask[:])
	return r, nil
}

// StartText writes the header of one masked text frame of length bytes;
// its payload follows with Write.
func (r *RawWS) StartText(length int64) error {
	hdr := []byte{0x81, 0x80 | 127}
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(length))
	hdr = append(hdr, r.mask[:]...)
	r.sent = 0
	_, err := r.Conn.Write(hdr)
	return err
}

// Write writes payload bytes of the current frame, masked.
func (r *RawWS) Write(p []byte) (int, error) {
	b := make([]byte, len(p))
	for i, c := range p {
		b[i] = c ^ r.mask[(r.sent+int64(i))%4]
	}
	n, err := r.Conn.Write(b)
	r.sent += int64(n)
	return n, err
}

// CloseStatus waits up to d for the peer's close frame and returns its
// status code, or 0 and the error when none arrives (the connection was
// dropped or d passed).
func (r *RawWS) CloseStatus(d time.Duration) (int, error) {
	r.Conn.SetReadDeadline(time.Now().Add(d))
	defer r.Conn.SetReadDeadline(time.Time{})
	for {
		var h [2]byte
		if _, err := io.ReadFull(r.br, h[:]); err != nil {
			return 0, err
		}
		n := int64(h[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(r.br, b[:]); err != nil {
				return 0, err
			}
			n = int64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(r.br, b[:]); err != nil {
				return 0, err
			}
			n = int64(binary.BigEndian.Uint64(b[:]))
		}
		payload := make([]byte, min(n, 1<<16))
		if _, err := io.ReadFull(r.br, payload); err != nil {
			return 0, err
		}
		if h[0]&0x0f == 0x8 {
			if len(payload) < 2 {
				return 1005, nil
			}
			return int(binary.BigEndian.Uint16(payload)), nil
		}
	}
}
