package admission

import (
	"context"
	"net/http"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// Services is what admission needs of the orchestrator's docker services.
type Services interface {
	// ConnectService picks a ready instance of d for one request and
	// returns the transport to it, holding one of its slots until
	// release is called (see orchestrator.ConnectService).
	ConnectService(ctx context.Context, d *job.Deployment) (rt http.RoundTripper, release func(), err error)
	ServiceInstances(d *job.Deployment) []job.InstanceView
	// ServicePending says why an instance that should run could not
	// start ("" when none waits).
	ServicePending(d *job.Deployment) string
	ServiceLogs(d *job.Deployment) string
	// FollowServiceLog hands fn a zero event once the follower is
	// admitted, then d's log events after seq after as they are written,
	// until the log ends, ctx is done or fn fails (see
	// orchestrator.FollowServiceLog).
	FollowServiceLog(ctx context.Context, d *job.Deployment, after uint64, fn func(job.ServiceLogEvent) error) error
	ObserveServiceRequest(d *job.Deployment, status int, took time.Duration)
}

// prepareService admits a docker service's deploy request: services must
// be served here, the egress it asks for must be allowed by the
// namespace's policy (forbidden, field network.egress; the orchestrator
// checks it again at every instance's start, for a policy that changed),
// and a Dockerfile is built first, as a build job of
// namespace submitted for the caller (every build check applies), whose
// image the service then runs.
func (s *Service) prepareService(ctx context.Context, namespace string, r *job.DeployRequest) error {
	if s.d.Services == nil {
		return &job.Error{Code: job.CodeUnavailable, Field: "runtime", Message: "this orchestrator serves no docker services"}
	}
	if err := s.checkEgress(ctx, namespace, r.Network); err != nil {
		return err
	}
	if !r.Builds() {
		if ns, built := job.ImageNamespace(r.DockerImage); built && ns != namespace {
			return job.Invalid("docker_image", "%s was built by another namespace", r.DockerImage)
		}
		return nil
	}
	br := r.BuildRequest(namespace)
	j, err := s.Submit(ctx, br)
	if err != nil {
		return err
	}
	if j.Spec.Docker == nil || j.Spec.Docker.Image == "" {
		return job.Errorf(job.CodeInternal, "build job %s names no image", j.ID)
	}
	r.ServiceRequest = r.ServiceRequest.Built(j.Spec.Docker.Image, j.ID)
	return nil
}

// Service returns the docker service at namespace/path (not_found when
// there is none or the caller may not see it).
func (s *Service) service(ctx context.Context, namespace, path string) (*job.Deployment, error) {
	if err := seeFunction(ctx, namespace, path); err != nil {
		return nil, err
	}
	d, _, ok := s.d.Functions.Lookup("/" + namespace + "/" + path)
	if !ok || d.Namespace != namespace || d.Path != path || d.Service == nil || s.d.Services == nil {
		return nil, job.Errorf(job.CodeNotFound, "no docker service is deployed at %s/%s", namespace, path)
	}
	return d, nil
}

// ServiceInstances lists the instances of the service at namespace/path
// (not_found when the caller may not see it).
func (s *Service) ServiceInstances(ctx context.Context, namespace, path string) ([]job.InstanceView, error) {
	d, err := s.service(ctx, namespace, path)
	if err != nil {
		return nil, err
	}
	return s.d.Services.ServiceInstances(d), nil
}

// ServicePending says why an instance of the service at namespace/path
// that should run could not start ("" when none waits; not_found when
// the caller may not see it).
func (s *Service) ServicePending(ctx context.Context, namespace, path string) (string, error) {
	d, err := s.service(ctx, namespace, path)
	if err != nil {
		return "", err
	}
	return s.d.Services.ServicePending(d), nil
}

// ServiceLogs returns the recent output of the service at namespace/path
// (not_found when the caller may not see it).
func (s *Service) ServiceLogs(ctx context.Context, namespace, path string) (*job.Deployment, []job.InstanceView, string, error) {
	d, err := s.service(ctx, namespace, path)
	if err != nil {
		return nil, nil, "", err
	}
	return d, s.d.Services.ServiceInstances(d), s.d.Services.ServiceLogs(d), nil
}

// FollowServiceLog follows the live log of the service at namespace/path
// from seq after, for a caller who sees it (another namespace's service
// is not_found, as for ServiceLogs). It blocks until the log ends, ctx is
// done or fn fails.
func (s *Service) FollowServiceLog(ctx context.Context, namespace, path string, after uint64, fn func(job.ServiceLogEvent) error) error {
	d, err := s.service(ctx, namespace, path)
	if err != nil {
		return err
	}
	return s.d.Services.FollowServiceLog(ctx, d, after, fn)
}

// ServiceAt returns the docker service that answers urlPath and the rest
// of the path below it; ok is false when a function (or nothing)
// answers there.
func (s *Service) ServiceAt(urlPath string) (d *job.Deployment, rest string, ok bool) {
	d, rest, ok = s.d.Functions.Lookup(urlPath)
	if !ok || d.Runtime != job.TypeDocker || d.Service == nil {
		return nil, "", false
	}
	return d, rest, true
}

// ConnectService connects a request to an instance of d, a docker
// service that answers its path. A public service answers anyone (it
// runs for its own namespace); a private one needs a principal that acts
// in its namespace: none is unauthorized, another forbidden.
func (s *Service) ConnectService(ctx context.Context, d *job.Deployment) (http.RoundTripper, func(), error) {
	if d.Public {
		ctx = job.WithPrincipal(ctx, FunctionPrincipal(d))
	} else {
		p, err := Caller(ctx)
		if err != nil {
			return nil, nil, err
		}
		if !p.Sees(d.Namespace) {
			return nil, nil, job.Errorf(job.CodeForbidden, "service %s is private to its namespace", d.Name())
		}
	}
	if s.d.Services == nil {
		return nil, nil, job.Errorf(job.CodeUnavailable, "this orchestrator serves no docker services")
	}
	return s.d.Services.ConnectService(ctx, d)
}

// ObserveServiceRequest records a request's answer for the metrics.
func (s *Service) ObserveServiceRequest(d *job.Deployment, status int, took time.Duration) {
	if s.d.Services != nil {
		s.d.Services.ObserveServiceRequest(d, status, took)
	}
}
