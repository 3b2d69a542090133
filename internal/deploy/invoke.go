package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/zerverless/zerverless/internal/job"
)

// maxErrorBytes bounds the part of a function's own error that a 502
// answer shows.
const maxErrorBytes = 4096

// Lookup returns the deployment that answers urlPath ("/namespace/a/b..."):
// the one with the longest path that is a whole-segment prefix of the URL
// path after its namespace. ok is false when none does.
func (s *Service) Lookup(urlPath string) (d *job.Deployment, rest string, ok bool) {
	s.mu.RLock()
	e, rest := s.lookupLocked(urlPath)
	s.mu.RUnlock()
	if e == nil {
		return nil, "", false
	}
	return e.d, rest, true
}

// lookupLocked finds the entry for urlPath and the rest of the path below
// it: "/" for the deployment itself, "/x/y" below it.
func (s *Service) lookupLocked(urlPath string) (*entry, string) {
	p := strings.TrimPrefix(urlPath, "/")
	end := len(p)
	if strings.HasSuffix(p, "/") {
		end--
	}
	for {
		cand := p[:end]
		i := strings.LastIndexByte(cand, '/')
		if i <= 0 {
			return nil, ""
		}
		if e, ok := s.table[cand]; ok {
			rest := p[end:]
			if rest == "" {
				rest = "/"
			}
			return e, rest
		}
		end = i
	}
}

// Invoke runs the function that urlPath names with req (whose Path it sets
// to the rest of urlPath) and returns the function's answer. It blocks
// until the function has answered, or failed, or ctx is done.
//
// Errors, by code: not_found when no function answers urlPath;
// unavailable when no slot under the function's max_concurrency, or no
// worker for its runtime, was free within Config.QueueWait; timeout when
// the function ran past its timeout; bad_gateway when it failed (an error
// raised, a crash, out of memory) or answered something that is not an
// HTTP response. An error without a code is internal; when ctx ended
// first, it wraps ctx's error.
func (s *Service) Invoke(ctx context.Context, urlPath string, req job.FunctionRequest) (job.FunctionResponse, error) {
	s.mu.RLock()
	e, rest := s.lookupLocked(urlPath)
	s.mu.RUnlock()
	if e == nil {
		return job.FunctionResponse{}, job.Errorf(job.CodeNotFound, "no function is deployed at %s", urlPath)
	}
	d := e.d
	if d.Runtime == job.TypeDocker {
		return job.FunctionResponse{}, job.Errorf(job.CodeUnavailable, "%s is a docker service, answered through its instances", d.Name())
	}
	req.Path = rest
	if e.sem != nil {
		release, err := s.acquire(ctx, e)
		if err != nil {
			return job.FunctionResponse{}, err
		}
		defer release()
	}
	p, err := s.code(ctx, e)
	if err != nil {
		return job.FunctionResponse{}, err
	}
	env := d.Env
	if env == nil {
		env = map[string]string{}
	}
	// The input is {"req": ..., "env": ...}; a Wasm function's has env
	// beside the request's members.
	input := req.AppendInput(make([]byte, 0, 256+len(req.Body)), env, d.Runtime == job.TypeWasm)
	timeout := d.TimeoutSeconds
	jr := job.Request{
		Type:           d.Runtime,
		Namespace:      d.Namespace,
		MaxAttempts:    s.cfg.MaxAttempts,
		Code:           p.code,
		Wasm:           p.wasm,
		Input:          input,
		TimeoutSeconds: &timeout,
		MemoryMB:       d.MemoryMB,
		// The invocation carries env and the caller's headers: it goes
		// to anonymous workers only where the deployment allows them.
		AnonymousWorkers: d.AnonymousWorkers,
	}
	j, err := s.inv.InvokeWithin(ctx, jr, s.cfg.QueueWait, s.cfg.QueueWait+d.Timeout()+s.cfg.StopGrace)
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return job.FunctionResponse{}, job.Errorf(job.CodeTimeout, "function %s did not answer within its timeout of %s", d.Name(), d.Timeout())
		}
		if job.ErrorCode(err) == job.CodeUnavailable {
			return job.FunctionResponse{}, job.Errorf(job.CodeUnavailable, "function %s: %v", d.Name(), err)
		}
		return job.FunctionResponse{}, fmt.Errorf("invoke %s: %w", d.Name(), err)
	}
	return answer(d, j)
}

// acquire takes a slot under e's max_concurrency, waiting at most
// QueueWait, and returns its release.
func (s *Service) acquire(ctx context.Context, e *entry) (func(), error) {
	select {
	case e.sem <- struct{}{}:
	default:
		t := time.NewTimer(s.cfg.QueueWait)
		defer t.Stop()
		select {
		case e.sem <- struct{}{}:
		case <-t.C:
			return nil, job.Errorf(job.CodeUnavailable, "function %s is running its maximum of %d invocations; try again later",
				e.d.Name(), cap(e.sem))
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	sem := e.sem
	return func() { <-sem }, nil
}

// answer maps a finished invocation to the function's HTTP answer or an
// error.
func answer(d *job.Deployment, j *job.Job) (job.FunctionResponse, error) {
	r := j.Result
	if r == nil {
		return job.FunctionResponse{}, job.Errorf(job.CodeBadGateway, "function %s failed: %s", d.Name(), clip(j.Reason))
	}
	switch r.Status {
	case job.StatusCompleted:
	case job.StatusTimeout:
		return job.FunctionResponse{}, job.Errorf(job.CodeTimeout, "function %s timed out after %s", d.Name(), d.Timeout())
	case job.StatusCanceled:
		return job.FunctionResponse{}, job.Errorf(job.CodeUnavailable, "function %s was stopped: %s", d.Name(), clip(r.Error))
	default:
		msg := r.Error
		if r.OOMKilled {
			msg = "out of memory: " + msg
		}
		if msg == "" {
			msg = fmt.Sprintf("exit code %d", r.ExitCode)
		}
		return job.FunctionResponse{}, job.Errorf(job.CodeBadGateway, "function %s failed: %s", d.Name(), clip(msg))
	}
	raw := r.Result
	if d.Runtime == job.TypeWasm && len(raw) == 0 {
		if r.Truncated {
			return job.FunctionResponse{}, job.Errorf(job.CodeBadGateway, "function %s wrote more than the output limit on stdout", d.Name())
		}
		raw = json.RawMessage(r.Output)
	}
	resp, err := job.ParseFunctionResponse(raw)
	if err != nil {
		return job.FunctionResponse{}, job.Errorf(job.CodeBadGateway, "function %s answered with an invalid response: %v", d.Name(), err)
	}
	return resp, nil
}

func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > maxErrorBytes {
		return s[:maxErrorBytes] + "…"
	}
	return s
}
