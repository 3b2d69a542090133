package main

import (
	"context"
	"fmt"

	"github.com/zerverless/zerverless/internal/auth"
)

// startAuth opens the token service over the store, makes the admin token
// on first start (or reuses the one in the data directory), and hands the
// service to the orchestrator, which checks workers' join tokens and reads
// namespace policies through it (admission, made in newHandler, takes it
// too). The orchestrator's build key is kept in the data directory as
// well.
func (s *Server) startAuth(ctx context.Context, cfg *ServerConfig) error {
	var err error
	s.auth, err = auth.New(cfg.Auth, s.store, s.log)
	if err != nil {
		return err
	}
	secret, created, err := s.auth.Bootstrap(ctx, cfg.DataDir)
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	s.adminToken, s.adminTokenCreated = secret, created
	if len(cfg.Orchestrator.BuildKey) == 0 {
		key, err := auth.BuildKey(cfg.DataDir)
		if err != nil {
			return err
		}
		cfg.Orchestrator.BuildKey = key
	}
	cfg.Orchestrator.Auth = s.auth
	cfg.Orchestrator.Policies = s.auth
	return nil
}

// AdminToken returns the secret of the admin token kept in the data
// directory.
func (s *Server) AdminToken() string { return s.adminToken }

// AdminTokenCreated reports whether this start made the admin token, which
// `serve` then prints, once.
func (s *Server) AdminTokenCreated() bool { return s.adminTokenCreated }

// AdminTokenPath returns where the admin token is kept.
func (s *Server) AdminTokenPath() string { return auth.AdminTokenPath(s.cfg.DataDir) }
