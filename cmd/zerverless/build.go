package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"

	"github.com/zerverless/zerverless/internal/contextstore"
	"github.com/zerverless/zerverless/internal/worker"
)

// startContexts opens the build context store in the data directory and
// starts its expiry loop, which ends with ctx.
func (s *Server) startContexts(ctx context.Context, cfg *ServerConfig) (*contextstore.Store, error) {
	cc := cfg.Contexts
	if cc.Dir == "" {
		cc.Dir = filepath.Join(cfg.DataDir, "build-contexts")
	}
	if cc.Logger == nil {
		cc.Logger = s.log.With("component", "build-contexts")
	}
	// One set of limits: uploads and inline contexts are held to the same.
	cc.Limits = cfg.Admission.ContextLimits
	cs, err := contextstore.New(cc, s.store)
	if err != nil {
		return nil, fmt.Errorf("build contexts: %w", err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		cs.Run(ctx)
	}()
	return cs, nil
}

// wireContextFetcher lets the embedded workers fetch uploaded build
// contexts from this server, through dial when it is not nil.
func (s *Server) wireContextFetcher(cfg *ServerConfig, dial func(ctx context.Context, network, addr string) (net.Conn, error)) error {
	if cfg.Runtimes.DockerConfig.Contexts != nil {
		return nil
	}
	f, err := worker.NewContextFetcher(s.WorkerURL(), cfg.Worker.Header, dial)
	if err != nil {
		return err
	}
	cfg.Runtimes.DockerConfig.Contexts = f
	return nil
}
