package worker

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/protocol"
)

// ContextFetcher fetches the uploaded build context of a task from the
// orchestrator over HTTP, presenting the task's job and lease ids: the
// orchestrator serves a context only to the worker that holds the lease of
// a running job that builds from it. The docker runtime uses it through
// its ContextFetcher interface and validates what it reads.
type ContextFetcher struct {
	base   *url.URL
	client *http.Client
	header http.Header
}

// NewContextFetcher returns a fetcher for the orchestrator whose worker
// endpoint is wsURL (ws://host:port/ws/volunteer; wss becomes https).
// header is sent with every request (credentials), and may be nil. dial,
// when not nil, makes the connections, as Config.Dial does.
func NewContextFetcher(wsURL string, header http.Header, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*ContextFetcher, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return nil, fmt.Errorf("orchestrator URL: %w", err)
	}
	switch u.Scheme {
	case "ws", "http":
		u.Scheme = "http"
	case "wss", "https":
		u.Scheme = "https"
	default:
		return nil, fmt.Errorf("orchestrator URL %q: scheme must be ws or wss", wsURL)
	}
	u.Path, u.RawQuery = "", ""
	return &ContextFetcher{base: u, client: httpClient(dial), header: header}, nil
}

// FetchBuildContext opens the context at t's build context URL. The caller
// closes the stream.
func (f *ContextFetcher) FetchBuildContext(ctx context.Context, t *job.Task) (io.ReadCloser, error) {
	b := t.Spec.Docker.Build
	if b == nil || !strings.HasPrefix(b.ContextURL, "/") {
		return nil, fmt.Errorf("the task names no build context URL")
	}
	ref, err := url.Parse(b.ContextURL)
	if err != nil {
		return nil, fmt.Errorf("build context URL: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.base.ResolveReference(ref).String(), nil)
	if err != nil {
		return nil, err
	}
	for k, v := range f.header {
		req.Header[k] = v
	}
	req.Header.Set("X-Zerverless-Job", t.JobID)
	req.Header.Set("X-Zerverless-Lease", t.LeaseID)
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch build context: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("fetch build context: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return resp.Body, nil
}

// buildCacheReporter is implemented by a docker runtime that builds
// images: the builds it holds, which the worker advertises.
type buildCacheReporter interface {
	BuildCache(max int) (sourceKeys, tags []string)
}

// poolReporter is implemented by a docker runtime that keeps prewarmed
// containers: their state, with at most max image references.
type poolReporter interface {
	PoolStatus(max int) *job.DockerPool
}

// poolSignature changes when the worker's ready containers do.
func poolSignature(p *job.DockerPool) string {
	if p == nil {
		return ""
	}
	return strconv.Itoa(p.Ready) + ":" + strings.Join(p.WarmImages, ",")
}

// maxReportedBuilds caps the build keys and image tags a worker reports.
const maxReportedBuilds = 256

// reportBuilds sends the worker's capabilities when the builds it holds
// changed since it last said, so that a job running a just-built image can
// be routed here before the build's result arrives.
func (s *session) reportBuilds(ctx context.Context) {
	caps, notes := s.w.capabilities()
	if caps.Docker == nil {
		return
	}
	sig := strings.Join(caps.Docker.BuildCache, ",") + "|" + strings.Join(caps.Docker.BuiltImages, ",") + "|" + poolSignature(caps.Docker.Pool)
	s.mu.Lock()
	same := sig == s.buildsSent
	s.buildsSent = sig
	s.mu.Unlock()
	if !same {
		s.send(ctx, protocol.Message{Type: protocol.TypeCapabilities, Capabilities: &caps, Notes: notes})
	}
}
