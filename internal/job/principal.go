package job

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// TokenKind says what a token is for.
type TokenKind string

const (
	// TokenAdmin may do everything, in every namespace.
	TokenAdmin TokenKind = "admin"
	// TokenNamespace acts only within its namespace.
	TokenNamespace TokenKind = "namespace"
	// TokenWorker is a join token: a worker that presents it is trusted.
	TokenWorker TokenKind = "worker"
)

// Known reports whether k is a kind the platform knows.
func (k TokenKind) Known() bool {
	return k == TokenAdmin || k == TokenNamespace || k == TokenWorker
}

// Principal is who makes a call, as established from a token.
type Principal struct {
	// TokenID identifies the token (never its secret); "" for the
	// platform's own embedded workers.
	TokenID string    `json:"token_id"`
	Kind    TokenKind `json:"kind"`
	// Namespace is the namespace of a namespace token.
	Namespace string `json:"namespace,omitempty"`
	// Name is a label the admin gave the token (for example the owner of
	// a worker), shown in logs and worker lists.
	Name string `json:"name,omitempty"`
}

// Admin reports whether p may do everything.
func (p Principal) Admin() bool { return p.Kind == TokenAdmin }

// Sees reports whether p may see and act on namespace ns.
func (p Principal) Sees(ns string) bool {
	return p.Kind == TokenAdmin || (p.Kind == TokenNamespace && p.Namespace == ns)
}

// Token is a stored API or join token, without its secret (only a hash of
// it is kept).
type Token struct {
	ID        string    `json:"id"`
	Kind      TokenKind `json:"kind"`
	Namespace string    `json:"namespace,omitempty"`
	Name      string    `json:"name,omitempty"`
	CreatedAt int64     `json:"-"`
}

// NamespacePolicy is what an operator set for one namespace. Zero fields
// take the platform's defaults.
type NamespacePolicy struct {
	Namespace string `json:"namespace"`
	// RequireTrustedWorkers sends the namespace's jobs only to workers
	// that joined with a join token.
	RequireTrustedWorkers bool   `json:"require_trusted_workers,omitempty"`
	Quotas                Quotas `json:"quotas,omitzero"`
	// AllowEgress lets the namespace's jobs ask for egress (Network);
	// off by default. Egress, when not empty, bounds what they may ask
	// for: each pattern of a job must be covered by one of these. Empty
	// leaves the bound to the workers' owners.
	AllowEgress bool     `json:"allow_egress,omitempty"`
	Egress      []string `json:"egress,omitempty"`
}

// Equal reports whether p and q are the same policy.
func (p NamespacePolicy) Equal(q NamespacePolicy) bool {
	return p.Namespace == q.Namespace && p.RequireTrustedWorkers == q.RequireTrustedWorkers &&
		p.Quotas == q.Quotas && p.AllowEgress == q.AllowEgress && slices.Equal(p.Egress, q.Egress)
}

// Validate checks the policy's egress patterns; the error is invalid and
// names the field.
func (p NamespacePolicy) Validate() error {
	if _, err := ParseEgress(p.Egress); err != nil {
		return Invalid("egress", "%v", err)
	}
	return nil
}

// EgressRefusal says why the policy does not let a job ask for egress
// ("" when it does, or the job asks for none).
func (p NamespacePolicy) EgressRefusal(egress []string) string {
	switch {
	case len(egress) == 0:
		return ""
	case !p.AllowEgress:
		return fmt.Sprintf("namespace %s does not allow egress (its policy's allow_egress is off)", p.Namespace)
	case len(p.Egress) > 0:
		if u := EgressUncovered(p.Egress, egress); u != "" {
			return fmt.Sprintf("namespace %s does not allow egress to %s (its policy allows %s)", p.Namespace, u, strings.Join(p.Egress, ", "))
		}
	}
	return ""
}

// Quotas bound what one namespace may hold at once. Zero fields take the
// platform's defaults; a negative field means no limit.
type Quotas struct {
	// PendingJobs caps jobs waiting in the queue.
	PendingJobs int `json:"pending_jobs,omitempty"`
	// RunningJobs caps jobs running at once; jobs beyond it wait queued.
	RunningJobs int `json:"running_jobs,omitempty"`
	// SubmitsPerSecond caps job submissions and invocations per second
	// (a token bucket with a burst of twice the rate).
	SubmitsPerSecond float64 `json:"submits_per_second,omitempty"`
	// Deployments caps deployed functions.
	Deployments int `json:"deployments,omitempty"`
	// BuildContextMB caps stored build contexts.
	BuildContextMB int `json:"build_context_mb,omitempty"`
	// JobStorageMB caps what the namespace's stored jobs take: their
	// specs and results, until retention removes them. A namespace over
	// it may submit again once enough of its jobs have expired.
	JobStorageMB int `json:"job_storage_mb,omitempty"`
	// MaxInstances caps the docker service instances the namespace runs
	// at once, all its services together.
	MaxInstances int `json:"max_instances,omitempty"`
}

// Merge returns q with its zero fields taken from def.
func (q Quotas) Merge(def Quotas) Quotas {
	if q.PendingJobs == 0 {
		q.PendingJobs = def.PendingJobs
	}
	if q.RunningJobs == 0 {
		q.RunningJobs = def.RunningJobs
	}
	if q.SubmitsPerSecond == 0 {
		q.SubmitsPerSecond = def.SubmitsPerSecond
	}
	if q.Deployments == 0 {
		q.Deployments = def.Deployments
	}
	if q.BuildContextMB == 0 {
		q.BuildContextMB = def.BuildContextMB
	}
	if q.JobStorageMB == 0 {
		q.JobStorageMB = def.JobStorageMB
	}
	if q.MaxInstances == 0 {
		q.MaxInstances = def.MaxInstances
	}
	return q
}

// DefaultQuotas are the documented defaults of every namespace.
func DefaultQuotas() Quotas {
	return Quotas{
		PendingJobs:      10_000,
		RunningJobs:      1_000,
		SubmitsPerSecond: 5000,
		Deployments:      100,
		BuildContextMB:   1024,
		JobStorageMB:     4096,
		MaxInstances:     20,
	}
}

// TrustedOnly are the job types sent only to trusted workers, whatever the
// namespace asks: a container runs with the worker's engine, and a build
// writes images there.
var TrustedOnly = []Type{TypeDocker}

// NeedsTrust reports whether jobs of type t go only to trusted workers.
func NeedsTrust(t Type) bool { return slices.Contains(TrustedOnly, t) }

// principalKey keys the principal of a call in a context.
type principalKey struct{}

// WithPrincipal returns ctx carrying p as the principal of the call. The
// HTTP adapter puts the caller it authenticated there; every service that
// acts for a tenant reads it back with ActsIn and refuses a context that
// carries none.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal ctx carries, and whether it carries
// one.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok && p.Kind != ""
}

// Caller returns the principal ctx carries. A context without one is an
// unauthorized error: nothing is done for nobody.
func Caller(ctx context.Context) (Principal, error) {
	p, ok := PrincipalFrom(ctx)
	if !ok {
		return Principal{}, Errorf(CodeUnauthorized, "no principal: the call carries no authenticated caller")
	}
	return p, nil
}

// ActsIn returns the principal ctx carries when it may act in namespace
// ns ("" is DefaultNamespace). No principal is unauthorized; one that may
// not act in ns (a join token, another namespace's token) is forbidden,
// naming the field namespace.
func ActsIn(ctx context.Context, ns string) (Principal, error) {
	p, err := Caller(ctx)
	if err != nil {
		return p, err
	}
	if ns == "" {
		ns = DefaultNamespace
	}
	if !p.Sees(ns) {
		return p, &Error{Code: CodeForbidden, Field: "namespace",
			Message: fmt.Sprintf("this caller (%s token) may not act in namespace %s", p.Kind, ns)}
	}
	return p, nil
}
