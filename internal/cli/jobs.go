package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
	"github.com/zerverless/zerverless/internal/store"
)

const jobsUsage = `Usage:
  zerverless jobs [flags]

Lists jobs, newest first.

Flags:
  --server URL      orchestrator (default $ZERVERLESS_SERVER, or http://localhost:8000)
  --token TOKEN     API token (default $ZERVERLESS_TOKEN, or DIR/admin.token)
  --data DIR        data dir of a local orchestrator (default $ZERVERLESS_DATA, or ./zerverless-data)
  --status STATUS   only jobs in STATUS: pending, running, completed, failed,
                    timeout or canceled
  --namespace NS    only jobs of namespace NS
  --limit N         page size (default 50, at most 500)
  --cursor CURSOR   the page after the one that printed CURSOR
  --json            print the page as JSON
`

func (c *command) jobs(ctx context.Context, args []string) int {
	var f store.JobFilter
	var status string
	var asJSON bool
	fs := c.flags()
	fs.StringVar(&status, "status", "", "")
	fs.StringVar(&f.Namespace, "namespace", "", "")
	fs.IntVar(&f.Limit, "limit", 0, "")
	fs.StringVar(&f.Cursor, "cursor", "", "")
	fs.BoolVar(&asJSON, "json", false, "")
	rest, st, ok := c.parse(fs, args, jobsUsage, true)
	if !ok {
		return st
	}
	if len(rest) > 0 {
		return c.usageError("unexpected arguments %q", rest)
	}
	f.Status = job.Status(status)
	cl := c.client()
	jobs, next, err := cl.Jobs(ctx, f)
	if err != nil {
		return c.fail(ExitFail, "%s: %v", cl.BaseURL(), describe(err))
	}
	if asJSON {
		if jobs == nil {
			jobs = []client.Summary{}
		}
		c.printJSON(api.JobList{Jobs: jobs, NextCursor: next})
		return ExitOK
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSTATUS\tNAMESPACE\tATTEMPT\tCREATED\tDURATION\tINFO")
	now := time.Now()
	for _, v := range jobs {
		duration, info := "-", v.Reason
		if r := v.ResultSummary; r != nil {
			duration = (time.Duration(r.DurationMS) * time.Millisecond).String()
			if r.Error != "" {
				info = r.Error
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", v.ID, v.Type, v.Status, v.Namespace,
			v.Attempt, v.MaxAttempts, age(now, v.CreatedAt), duration, oneLine(info, 60))
	}
	tw.Flush()
	if next != "" {
		fmt.Fprintf(c.stderr, "more jobs: zerverless jobs --cursor %s\n", next)
	}
	return ExitOK
}

// age says how long ago t was, in the largest whole unit.
func age(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return t.Local().Format("2006-01-02")
}

// oneLine flattens s to one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	if s == "" {
		return "-"
	}
	return s
}

const jobUsage = `Usage:
  zerverless job [flags] ID

Prints the job with ID as JSON.

Flags:
  --server URL       orchestrator (default $ZERVERLESS_SERVER, or http://localhost:8000)
  --token TOKEN      API token (default $ZERVERLESS_TOKEN, or DIR/admin.token)
  --data DIR         data dir of a local orchestrator (default $ZERVERLESS_DATA, or ./zerverless-data)
  --wait DURATION    wait up to DURATION for the job to end first (30s, 1m)
  --spec             include what the job runs (code, module, input, image)
`

func (c *command) job(ctx context.Context, args []string) int {
	var wait time.Duration
	var spec bool
	fs := c.flags()
	fs.DurationVar(&wait, "wait", 0, "")
	fs.BoolVar(&spec, "spec", false, "")
	rest, st, ok := c.parse(fs, args, jobUsage, true)
	if !ok {
		return st
	}
	if len(rest) != 1 {
		return c.usageError("give one job ID")
	}
	if wait < 0 || wait > 0 && spec {
		return c.usageError("--wait must be positive, and cannot be combined with --spec")
	}
	cl := c.client()
	var v client.View
	var err error
	if spec {
		v, err = cl.JobWithSpec(ctx, rest[0])
	} else {
		v, err = cl.Job(ctx, rest[0], wait)
	}
	if err != nil {
		return c.fail(ExitFail, "%s: %v", cl.BaseURL(), describe(err))
	}
	c.printJSON(v)
	return ExitOK
}

const cancelUsage = `Usage:
  zerverless cancel [flags] ID...

Cancels jobs: a pending job never runs, a running one is stopped.

Flags:
  --server URL   orchestrator (default $ZERVERLESS_SERVER, or http://localhost:8000)
  --token TOKEN  API token (default $ZERVERLESS_TOKEN, or DIR/admin.token)
  --data DIR     data dir of a local orchestrator (default $ZERVERLESS_DATA, or ./zerverless-data)
`

func (c *command) cancel(ctx context.Context, args []string) int {
	fs := c.flags()
	ids, st, ok := c.parse(fs, args, cancelUsage, true)
	if !ok {
		return st
	}
	if len(ids) == 0 {
		return c.usageError("give the ID of a job to cancel")
	}
	cl := c.client()
	status := ExitOK
	for _, id := range ids {
		v, err := cl.Cancel(ctx, id)
		if err != nil {
			status = c.fail(ExitFail, "%s: %v", id, describe(err))
			continue
		}
		fmt.Fprintf(c.stdout, "%s %s\n", v.ID, v.Status)
	}
	return status
}

// printJSON writes v as indented JSON.
func (c *command) printJSON(v any) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		fmt.Fprintf(c.stderr, "zerverless %s: encode: %v\n", c.name, err)
		return
	}
	fmt.Fprintf(c.stdout, "%s\n", data)
}
