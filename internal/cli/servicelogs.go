package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
)

// serviceLogs is `zerverless logs [-f] NAMESPACE/PATH`: a docker
// service's recent output, or its live log.
func (c *command) serviceLogs(ctx context.Context, cl *client.Client, ns, path string, follow bool) int {
	name := ns + "/" + path
	if !follow {
		l, err := cl.ServiceLogs(ctx, ns, path)
		if err != nil {
			return c.fail(ExitFail, "read the log of service %s at %s: %v", name, cl.BaseURL(), describe(err))
		}
		fmt.Fprint(c.stdout, l.Output)
		return ExitOK
	}
	err := cl.FollowServiceLog(ctx, ns, path, 0, func(ev job.ServiceLogEvent) error {
		c.printServiceEvent(name, ev)
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return ExitInterrupted
		}
		return c.fail(ExitFail, "follow the log of service %s at %s: %v", name, cl.BaseURL(), describe(err))
	}
	return ExitOK
}

// printServiceEvent prints one event of a service's log: output lines
// after their instance's short id (stdout to stdout, stderr to stderr),
// gaps and the end to stderr.
func (c *command) printServiceEvent(name string, ev job.ServiceLogEvent) {
	if ev.Dropped > 0 && ev.Stream != job.LogDropped {
		fmt.Fprintf(c.stderr, "zerverless: service %s: %d bytes of output were left out here (its output rate bound)\n", name, ev.Dropped)
	}
	switch ev.Stream {
	case job.LogStdout, job.LogStderr:
		out := c.stdout
		if ev.Stream == job.LogStderr {
			out = c.stderr
		}
		prefix := "[" + ev.Instance[:min(8, len(ev.Instance))] + "] "
		for line := range strings.Lines(ev.Text) {
			fmt.Fprint(out, prefix+line)
		}
	case job.LogDropped:
		if ev.Missed > 0 {
			fmt.Fprintf(c.stderr, "zerverless: service %s: %d log events (%d bytes) were missed here\n", name, ev.Missed, ev.Dropped)
		} else {
			fmt.Fprintf(c.stderr, "zerverless: service %s: some log events were missed here\n", name)
		}
	case job.LogEnd:
		fmt.Fprintf(c.stderr, "zerverless: service %s: the log ended: %s\n", name, ev.Reason)
	}
}
