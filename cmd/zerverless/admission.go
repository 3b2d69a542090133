package main

import (
	"fmt"
	"net/http"

	"github.com/zerverless/zerverless/internal/admission"
	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/contextstore"
)

// newHandler makes the admission service over the orchestrator, the
// deployments, the token service, the build contexts and the store, and
// the HTTP handler in front of it. Every tenant's call goes through
// admission; nothing here can leave a check out.
func (s *Server) newHandler(cfg ServerConfig, contexts *contextstore.Store, metrics http.Handler) (http.Handler, error) {
	adm, err := admission.New(cfg.Admission, admission.Deps{
		Jobs: s.orch, Functions: s.fns, Tokens: s.auth,
		Contexts: contexts, Owners: s.store, Quotas: s.orch, Logs: s.orch, Services: s.orch,
	})
	if err != nil {
		return nil, fmt.Errorf("admission: %w", err)
	}
	platform, err := api.New(cfg.API, adm, s.orch, s.log, metrics)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	h, err := api.NewFunctions(cfg.API, cfg.Functions, adm, s.log, platform)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	return h, nil
}
