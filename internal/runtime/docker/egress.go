package docker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/zerverless/zerverless/internal/egress"
	"github.com/zerverless/zerverless/internal/job"
)

// Egress. A job, or a build, that asks for egress (job.Network) runs in
// the network namespace of a relay that listens on egressListen, its
// only way out: the container has loopback and nothing else, so a
// connection that bypasses the proxy reaches nothing. HTTP_PROXY and
// HTTPS_PROXY (both spellings) point at the relay's address; the relay
// hands each connection to the worker, whose egress.Proxy allows exactly
// what both the job's patterns and the owner's Config.Egress name,
// resolves names itself, refuses the worker's own machine and networks
// unless the owner named the address, and counts what passes. The result
// lists each destination (Result.Egress, BuildResult.Egress), and each
// refusal is a line of the job's stderr (of the build log for a build).

// egressListen is where a job's proxy is, on its own loopback.
var egressListen = "127.0.0.1:" + strconv.Itoa(job.EgressProxyPort)

// egressConnsAtOnce bounds the connections a job's relay carries at once.
const egressConnsAtOnce = 64

// validateEgress checks the egress settings of c.
func (c *Config) validateEgress() error {
	if _, err := job.ParseEgress(c.Egress); err != nil {
		return fmt.Errorf("egress: %w", err)
	}
	if c.EgressBytes < 0 || c.EgressConns < 0 {
		return errors.New("egress byte and connection limits must not be negative")
	}
	return nil
}

// egressAllowed is the egress this worker advertises: its owner's list,
// when it has the agent that carries it.
func (d *Docker) egressAllowed() []string {
	if d.cfg.AgentBinary == "" || len(d.cfg.Egress) == 0 {
		return nil
	}
	out, _ := job.CanonicalEgress(d.cfg.Egress)
	return out
}

// egressRun is the relay and proxy of one job's or build's egress.
type egressRun struct {
	relay  *netRelay
	proxy  *egress.Proxy
	cancel context.CancelFunc // ends the proxy's lookups and dials
	wg     sync.WaitGroup
	once   sync.Once
}

// checkEgress refuses (*specError) egress want that this worker's owner
// does not allow. It touches nothing.
func (d *Docker) checkEgress(want []string) error {
	if len(want) == 0 {
		return nil
	}
	if _, err := job.ParseEgress(want); err != nil {
		return refuse("network.egress: %v", err)
	}
	switch allowed := d.egressAllowed(); {
	case len(allowed) == 0:
		return refuse("network.egress: this worker allows no egress (its owner did not set --docker-egress, or it has no agent)")
	case job.EgressUncovered(allowed, want) != "":
		return refuse("network.egress: %s is not allowed by this worker's owner (allowed: %s)",
			job.EgressUncovered(allowed, want), strings.Join(allowed, ", "))
	}
	return nil
}

// startEgress starts the relay and proxy of the egress want of the job
// id, labeled with role and deadline; nil when want is empty. Egress
// this worker does not allow is refused (*specError). The proxy serves
// until end, or until ctx ends. On error nothing is left.
func (d *Docker) startEgress(ctx context.Context, id string, want []string, role string, deadline time.Time) (*egressRun, error) {
	return d.startEgressRelay(ctx, want, relayConfig{role: role, jobID: id, deadline: deadline, maxConns: egressConnsAtOnce},
		egress.Config{MaxBytes: d.cfg.EgressBytes, MaxConns: d.cfg.EgressConns})
}

// startEgressRelay is startEgress with the relay rc (which also listens
// on egressListen) and the limits of lim (its Allow, Owner, Local and
// Resolver are filled in).
func (d *Docker) startEgressRelay(ctx context.Context, want []string, rc relayConfig, lim egress.Config) (*egressRun, error) {
	if len(want) == 0 {
		return nil, nil
	}
	if err := d.checkEgress(want); err != nil {
		return nil, err
	}
	allow, err := job.ParseEgress(want)
	if err != nil {
		return nil, refuse("network.egress: %v", err)
	}
	owner, err := job.ParseEgress(d.cfg.Egress)
	if err != nil {
		return nil, err
	}
	rc.listen = append(rc.listen, egressListen)
	r, err := d.startRelay(ctx, rc)
	if err != nil {
		return nil, fmt.Errorf("egress relay: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	lim.Allow, lim.Owner, lim.Local, lim.Resolver = allow, owner, egress.LocalPrefixes(), d.cfg.EgressResolver
	e := &egressRun{relay: r, cancel: cancel, proxy: egress.New(lim)}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, _, err := r.accept()
			if err != nil {
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				e.proxy.Serve(ctx, c)
			}()
		}
	}()
	return e, nil
}

// join makes the container of cfg and host use e's namespace and proxy.
// A nil e changes nothing.
func (e *egressRun) join(cfg *container.Config, host *container.HostConfig) {
	if e == nil {
		return
	}
	cfg.NetworkDisabled = false
	host.NetworkMode = e.relay.networkMode()
	cfg.Env = append(cfg.Env, proxyEnv()...)
}

// proxyEnv points the usual proxy variables at the job's proxy, with no
// exceptions.
func proxyEnv() []string {
	u := "http://" + egressListen
	return []string{"HTTP_PROXY=" + u, "HTTPS_PROXY=" + u, "http_proxy=" + u, "https_proxy=" + u, "NO_PROXY=", "no_proxy="}
}

// end cuts every connection, removes the relay and waits for the proxy's
// goroutines. It may be called more than once; a nil e does nothing.
func (e *egressRun) end() {
	if e == nil {
		return
	}
	e.once.Do(func() {
		e.cancel()
		e.proxy.Close()
		e.relay.close()
		e.wg.Wait()
	})
}

// notes returns the refusal lines, newline-terminated ("" when none).
func (e *egressRun) notes() string {
	n := e.proxy.Notes()
	if len(n) == 0 {
		return ""
	}
	return strings.Join(n, "\n") + "\n"
}

// appendLines returns log with lines after it, on a line of their own.
func appendLines(log, lines string) string {
	if lines == "" {
		return log
	}
	if log != "" && !strings.HasSuffix(log, "\n") {
		log += "\n"
	}
	return log + lines
}

// report ends e and writes what the job's egress did into res: the
// destinations, the refusals at the end of stderr, and a job that the
// byte limit cut fails saying so.
func (e *egressRun) report(res *job.Result) {
	if e == nil {
		return
	}
	e.end()
	res.Egress = e.proxy.Records()
	res.Stderr = appendLines(res.Stderr, e.notes())
	if cut := e.proxy.Cut(); cut != "" && (res.Status == job.StatusCompleted || res.Status == job.StatusFailed) {
		msg := "egress limit: " + cut
		if res.ExitCode != 0 {
			msg += fmt.Sprintf("; exit code %d", res.ExitCode)
		}
		res.Status, res.Error = job.StatusFailed, msg
	}
}

// endEgress ends the build's egress, if it has one, reports its
// destinations in br and returns its refusal lines, for the end of the
// build log past its cap: a build that fills its log does not hide them.
func (x *executor) endEgress(br *job.BuildResult) string {
	if x.egress == nil {
		return ""
	}
	x.egress.end()
	br.Egress = x.egress.proxy.Records()
	return x.egress.notes()
}

// egressCut says, for a build's error, that its egress byte limit cut
// its connections ("" when it did not).
func (x *executor) egressCut() string {
	if x.egress == nil {
		return ""
	}
	if cut := x.egress.proxy.Cut(); cut != "" {
		return "; egress limit: " + cut
	}
	return ""
}

// unsetProxyEnv adds to a commit's env the bare names of the proxy
// variables its steps had and the image does not set (have), so that the
// image does not keep them.
func (x *executor) unsetProxyEnv(env []string, have map[string]bool) []string {
	if x.egress == nil {
		return env
	}
	for _, e := range proxyEnv() {
		if k, _, _ := strings.Cut(e, "="); !have[k] {
			env = append(env, k)
		}
	}
	return env
}
