package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
)

const logsUsage = `Usage:
  zerverless logs [flags] ID
  zerverless logs [flags] NAMESPACE/PATH

Prints what job ID has written so far: its stdout to stdout, its stderr to
stderr, and changes of its status (running, restarted, ended) to stderr.
With -f it goes on printing as the job writes, until the job ends (and
reconnects, missing nothing, if the connection breaks). The exit status is
0 once the log is printed, 1 when the job is unknown.

Given NAMESPACE/PATH, a docker service, it prints the recent output of its
instances, each line after its instance's short id; with -f it goes on
printing as they write, until the service is undeployed (Ctrl-C stops).
Lines the log no longer held, or that the connection was too slow for,
are reported on stderr.

Flags:
  --server URL        orchestrator (default $ZERVERLESS_SERVER, or http://localhost:8000)
  --token TOKEN       API token (default $ZERVERLESS_TOKEN, or DIR/admin.token)
  --data DIR          data dir of a local orchestrator (default $ZERVERLESS_DATA, or ./zerverless-data)
  -f, --follow        follow the log until the job ends (a service: until it is undeployed)
`

func (c *command) logs(ctx context.Context, args []string) int {
	var followLog bool
	fs := c.flags()
	fs.BoolVar(&followLog, "f", false, "")
	fs.BoolVar(&followLog, "follow", false, "")
	rest, st, ok := c.parse(fs, args, logsUsage, true)
	if !ok {
		return st
	}
	if len(rest) != 1 {
		return c.usageError("give one job ID")
	}
	id := rest[0]
	cl := c.client()
	if ns, path, ok := strings.Cut(id, "/"); ok {
		return c.serviceLogs(ctx, cl, ns, path, followLog)
	}
	p := &logPrinter{c: c, id: id, statuses: true}
	if followLog {
		if err := cl.FollowJobLog(ctx, id, 0, p.print); err != nil {
			if ctx.Err() != nil {
				return ExitInterrupted
			}
			return c.fail(ExitFail, "follow the log of job %s at %s: %v", id, cl.BaseURL(), describe(err))
		}
		return ExitOK
	}
	var after uint64
	for {
		page, err := cl.JobLog(ctx, id, after)
		if err != nil {
			return c.fail(ExitFail, "read the log of job %s at %s: %v", id, cl.BaseURL(), describe(err))
		}
		for _, ev := range page.Events {
			_ = p.print(ev)
		}
		if len(page.Events) == 0 || page.Next == after {
			return ExitOK
		}
		after = page.Next
	}
}

// logPrinter prints a job's log events as they come: output to stdout and
// stderr, status changes (with statuses) to stderr. It keeps what the
// current attempt wrote, so that the final result's output is not printed
// twice (printRest).
type logPrinter struct {
	c        *command
	id       string
	statuses bool
	// out and errOut are what the current attempt wrote; dropped says that
	// the log left some of it out.
	out, errOut strings.Builder
	dropped     bool
	// mu orders what is printed: events, and the notice of followOutput
	// (noticed says that why the job is pending was printed).
	mu      sync.Mutex
	noticed bool
}

func (p *logPrinter) print(ev job.LogEvent) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch ev.Stream {
	case job.LogStdout:
		fmt.Fprint(p.c.stdout, ev.Text)
		p.out.WriteString(ev.Text)
	case job.LogStderr:
		fmt.Fprint(p.c.stderr, ev.Text)
		p.errOut.WriteString(ev.Text)
	case job.LogStatus:
		noticed := p.noticed
		p.noticed = p.noticed || ev.Status == job.StatusPending && ev.Reason != ""
		switch {
		case ev.Status == job.StatusPending && ev.Reason != "" && !ev.Restarted && !noticed:
			fmt.Fprintf(p.c.stderr, "zerverless %s: job %s is pending: %s; still waiting (Ctrl-C stops waiting, the job stays queued)\n", p.c.name, p.id, ev.Reason)
		case ev.Restarted:
			fmt.Fprintf(p.c.stderr, "zerverless: job %s: the attempt was lost and the job is %s again (attempt %d): %s\n", p.id, ev.Status, ev.Attempt, ev.Reason)
			p.out.Reset()
			p.errOut.Reset()
			p.dropped = false
		case p.statuses:
			fmt.Fprintf(p.c.stderr, "zerverless: job %s is %s (attempt %d)\n", p.id, ev.Status, ev.Attempt)
		}
	}
	if ev.Dropped > 0 {
		p.dropped = true
	}
	return nil
}

// printRest prints what the result holds past what the log printed: the
// returned value, and the output the log left out. When the result's
// output is not what the log showed, the log is the truth and nothing more
// is printed of it.
func (p *logPrinter) printRest(v client.View) {
	r := v.ResultView
	if r == nil {
		p.c.printOutput(v)
		return
	}
	rest := *r
	rest.Output = strings.TrimPrefix(r.Output, p.out.String())
	rest.Stderr = strings.TrimPrefix(r.Stderr, p.errOut.String())
	if len(rest.Output) == len(r.Output) && p.out.Len() > 0 {
		rest.Output = ""
	}
	if len(rest.Stderr) == len(r.Stderr) && p.errOut.Len() > 0 {
		rest.Stderr = ""
	}
	if rest.Output == "" && p.out.Len() > 0 && !strings.HasSuffix(p.out.String(), "\n") && len(r.Result) > 0 && string(r.Result) != "null" {
		fmt.Fprintln(p.c.stdout)
	}
	v.ResultView = &rest
	p.c.printOutput(v)
}

// followOutput prints job id's output as it is written, until the job
// ends, and returns the job then. When the log cannot be followed (an
// older server has none, or it has as many followers as it takes), it
// waits for the job as before, and p is nil.
func (c *command) followOutput(ctx context.Context, cl *client.Client, id string) (v client.View, p *logPrinter, err error) {
	p = &logPrinter{c: c, id: id}
	// Why a job waits is not in its log until it has run: say it after a
	// while, as await does.
	notice := time.AfterFunc(pendingNotice, func() {
		v, err := cl.Job(ctx, id, 0)
		if err != nil || v.Status != job.StatusPending || v.Reason == "" {
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.noticed {
			p.noticed = true
			fmt.Fprintf(c.stderr, "zerverless %s: job %s is pending: %s; still waiting (Ctrl-C stops waiting, the job stays queued)\n", c.name, id, v.Reason)
		}
	})
	err = cl.FollowJobLog(ctx, id, 0, p.print)
	notice.Stop()
	var apiErr *client.Error
	if errors.As(err, &apiErr) && (apiErr.StatusCode == http.StatusNotFound || apiErr.StatusCode == http.StatusServiceUnavailable) {
		v, err = c.await(ctx, cl, id)
		return v, nil, err
	}
	if err != nil {
		return v, nil, err
	}
	v, err = cl.Job(ctx, id, 0)
	return v, p, err
}
