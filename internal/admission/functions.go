package admission

import (
	"context"

	"github.com/zerverless/zerverless/internal/job"
)

// Deploy stores the function at namespace/path for a caller that acts in
// namespace (forbidden, field namespace, otherwise).
func (s *Service) Deploy(ctx context.Context, namespace, path string, r job.DeployRequest) (*job.Deployment, error) {
	p, err := Caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := job.ValidateFunctionName(namespace, path); err != nil {
		return nil, err
	}
	if !p.Sees(namespace) {
		return nil, &job.Error{Code: job.CodeForbidden, Field: "namespace",
			Message: "this token cannot deploy under namespace " + namespace + "; it acts only in namespace " + p.Namespace}
	}
	if r.Runtime == job.TypeDocker {
		if err := s.prepareService(ctx, namespace, &r); err != nil {
			return nil, err
		}
	}
	return s.d.Functions.Deploy(ctx, namespace, path, r)
}

// seeFunction returns not_found when the caller may not see the function
// at namespace/path: to a namespace token, another namespace's functions
// do not exist.
func seeFunction(ctx context.Context, namespace, path string) error {
	p, err := Caller(ctx)
	if err != nil {
		return err
	}
	if !p.Sees(namespace) {
		return job.Errorf(job.CodeNotFound, "no function is deployed at %s/%s", namespace, path)
	}
	return nil
}

// Deployment returns one function with its code (not_found when the
// caller may not see it).
func (s *Service) Deployment(ctx context.Context, namespace, path string) (*job.Deployment, error) {
	if err := seeFunction(ctx, namespace, path); err != nil {
		return nil, err
	}
	return s.d.Functions.Deployment(ctx, namespace, path)
}

// Undeploy removes one function (not_found when the caller may not see
// it).
func (s *Service) Undeploy(ctx context.Context, namespace, path string) error {
	if err := seeFunction(ctx, namespace, path); err != nil {
		return err
	}
	return s.d.Functions.Undeploy(ctx, namespace, path)
}

// Deployments lists functions of namespace ("" is every namespace for an
// admin, and its own for a namespace token; another is forbidden, field
// namespace).
func (s *Service) Deployments(ctx context.Context, namespace string, withCode bool) ([]*job.Deployment, error) {
	_, ns, err := scope(ctx, namespace, "namespace")
	if err != nil {
		return nil, err
	}
	return s.d.Functions.Deployments(ctx, ns, withCode)
}

// FunctionIsPrivate reports whether a function answers urlPath and needs
// a token: the HTTP adapter authenticates the caller of those only.
// Invoke decides again.
func (s *Service) FunctionIsPrivate(urlPath string) bool {
	d, _, ok := s.d.Functions.Lookup(urlPath)
	return ok && !d.Public
}

// Invoke runs the function that answers urlPath. A public function
// answers anyone, with or without a principal; it runs for its own
// namespace. A private one needs a principal that acts in its namespace:
// none is unauthorized, another is forbidden. A path where no function
// answers is not_found.
func (s *Service) Invoke(ctx context.Context, urlPath string, req job.FunctionRequest) (job.FunctionResponse, error) {
	d, _, ok := s.d.Functions.Lookup(urlPath)
	if !ok {
		return job.FunctionResponse{}, job.Errorf(job.CodeNotFound, "no function is deployed at %s", urlPath)
	}
	if d.Public {
		ctx = job.WithPrincipal(ctx, FunctionPrincipal(d))
	} else {
		p, err := Caller(ctx)
		if err != nil {
			return job.FunctionResponse{}, err
		}
		if !p.Sees(d.Namespace) {
			return job.FunctionResponse{}, job.Errorf(job.CodeForbidden, "function %s is private to its namespace", d.Name())
		}
	}
	return s.d.Functions.Invoke(ctx, urlPath, req)
}

// FunctionPrincipal is who a public function runs for: its own namespace.
// Deploying a function public is its namespace's consent that anyone may
// run it, within the namespace's quotas.
func FunctionPrincipal(d *job.Deployment) job.Principal {
	return job.Principal{Kind: job.TokenNamespace, Namespace: d.Namespace, Name: "public function " + d.Name()}
}
