package api

import (
	"context"
	"log/slog"
	"net"
	"net/http"

	"github.com/coder/websocket"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/netlimit"
)

// StreamAcceptor takes workers' stream connections (see docs/protocol.md,
// "Services"); the orchestrator implements it.
type StreamAcceptor interface {
	// AcceptStreams checks the stream key presented from remote before
	// the upgrade (an unknown one is unauthorized); serve runs the
	// upgraded connection until it ends. serve is called once, with nil
	// when the upgrade did not happen.
	AcceptStreams(key, remote string) (serve func(conn net.Conn), err error)
}

// streams is GET /ws/streams: a worker's second WebSocket, authenticated
// by the stream key of its session (Authorization: Bearer <stream_key>),
// carrying the connections to its service instances. A refused key is
// answered before any upgrade; the connection then counts as a worker
// session (netlimit.Promote).
func (s *server) streams(w http.ResponseWriter, r *http.Request) {
	key, _ := bearer(r)
	if key == "" {
		s.writeError(w, r, job.Errorf(job.CodeUnauthorized, "the stream connection needs Authorization: Bearer <stream_key>"))
		return
	}
	serve, err := s.cfg.Streams.AcceptStreams(key, r.RemoteAddr)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := netlimit.Promote(r.Context()); err != nil {
		serve(nil)
		w.Header().Set("Retry-After", "5")
		s.writeError(w, r, job.Errorf(job.CodeUnavailable, "%v", err))
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		serve(nil)
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "stream upgrade refused", slog.String("remote", r.RemoteAddr), slog.Any("err", err))
		return
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	stop := context.AfterFunc(r.Context(), cancel)
	defer stop()
	serve(websocket.NetConn(ctx, c, websocket.MessageBinary))
	c.CloseNow()
}
