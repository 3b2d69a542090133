package orchestrator

import (
	"context"
	"crypto/subtle"
	"fmt"

	"github.com/zerverless/zerverless/internal/job"
)

// Authenticator checks a token's secret. It returns an error with code
// unauthorized for a secret it does not know or that was revoked.
type Authenticator interface {
	Authenticate(ctx context.Context, secret string) (job.Principal, error)
}

// PolicySource gives the operator's policy for a namespace; a namespace
// nobody set a policy for gets the zero policy.
type PolicySource interface {
	NamespacePolicy(ctx context.Context, namespace string) (job.NamespacePolicy, error)
}

// identity is who a connecting worker is.
type identity struct {
	trusted bool
	// owner names the join token; "" for anonymous volunteers and the
	// embedded workers. Replicas of one job go to distinct owners where
	// known, and always to distinct workers.
	owner string
}

// identify checks the token a worker presented at registration.
func (o *Orchestrator) identify(ctx context.Context, token string) (identity, error) {
	if token == "" {
		if !o.cfg.OpenVolunteering {
			return identity{}, fmt.Errorf("this orchestrator accepts only workers with a join token (zerverless worker --join-token); anonymous volunteering is off")
		}
		return identity{}, nil
	}
	if s := o.cfg.LocalWorkerSecret; s != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s)) == 1 {
		// The orchestrator's own workers: trusted, each its own owner.
		return identity{trusted: true}, nil
	}
	if o.cfg.Auth == nil {
		return identity{}, fmt.Errorf("invalid join token")
	}
	p, err := o.cfg.Auth.Authenticate(ctx, token)
	if err != nil {
		return identity{}, fmt.Errorf("invalid join token")
	}
	if p.Kind != job.TokenWorker && p.Kind != job.TokenAdmin {
		return identity{}, fmt.Errorf("a %s token is not a join token", p.Kind)
	}
	owner := p.TokenID
	if p.Name != "" {
		owner = p.Name + " (" + p.TokenID + ")"
	}
	return identity{trusted: true, owner: owner}, nil
}
