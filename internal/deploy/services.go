package deploy

import (
	"slices"
	"strings"

	"github.com/zerverless/zerverless/internal/job"
)

// Services returns the docker services deployed now (without code), by
// name.
func (s *Service) Services() []*job.Deployment {
	s.mu.RLock()
	var out []*job.Deployment
	for _, e := range s.table {
		if e.d.Runtime == job.TypeDocker && e.d.Service != nil {
			out = append(out, e.d)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b *job.Deployment) int { return strings.Compare(a.Name(), b.Name()) })
	return out
}

// changed tells Config.OnChange that the table changed.
func (s *Service) changed() {
	if s.cfg.OnChange != nil {
		s.cfg.OnChange()
	}
}
