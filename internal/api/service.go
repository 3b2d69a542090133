package api

import (
	"context"

	"github.com/zerverless/zerverless/internal/protocol"
)

// Service is what the HTTP API needs of the orchestrator beyond admission:
// the worker protocol, which authenticates inside itself. Everything done
// for a tenant goes through admission.Service.
type Service interface {
	// ServeWorker runs the orchestrator's side of one worker connection
	// until it ends. The API accepts the WebSocket and hands it over.
	ServeWorker(ctx context.Context, conn *protocol.Conn, remote string) error
}
