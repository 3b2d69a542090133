package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/zerverless/zerverless/internal/api"
	"github.com/zerverless/zerverless/internal/job"
)

const tokenUsage = `Usage:
  zerverless token create --namespace NS [--name NAME]   a namespace token
  zerverless token create --worker --name NAME            a join token for a trusted worker
  zerverless token create --admin [--name NAME]           another admin token
  zerverless token list
  zerverless token revoke ID

Manages API and join tokens; every subcommand needs an admin token.
create prints the new token's secret on stdout, once: it cannot be shown
again. A namespace token acts only in its namespace; a join token lets a
worker connect as trusted (zerverless worker --join-token).

Flags:
  --server URL      orchestrator (default $ZERVERLESS_SERVER, or http://localhost:8000)
  --token TOKEN     API token (default $ZERVERLESS_TOKEN, or DIR/admin.token)
  --data DIR        data dir of a local orchestrator (default $ZERVERLESS_DATA, or ./zerverless-data)
  --json            print the token (or the list) as JSON
`

// tokenCmd runs `zerverless token SUBCOMMAND`.
func (c *command) tokenCmd(ctx context.Context, args []string) int {
	if len(args) == 0 {
		return c.usageError("want a subcommand: create, list or revoke")
	}
	switch args[0] {
	case "create":
		return c.tokenCreate(ctx, args[1:])
	case "list":
		return c.tokenList(ctx, args[1:])
	case "revoke":
		return c.tokenRevoke(ctx, args[1:])
	case "-h", "--help", "help":
		fmt.Fprint(c.stdout, tokenUsage)
		return ExitOK
	}
	return c.usageError("unknown subcommand %q: one of create, list, revoke", args[0])
}

func (c *command) tokenCreate(ctx context.Context, args []string) int {
	var (
		req           api.TokenRequest
		worker, admin bool
		asJSON        bool
	)
	fs := c.flags()
	fs.StringVar(&req.Namespace, "namespace", "", "")
	fs.StringVar(&req.Name, "name", "", "")
	fs.BoolVar(&worker, "worker", false, "")
	fs.BoolVar(&admin, "admin", false, "")
	fs.BoolVar(&asJSON, "json", false, "")
	rest, st, ok := c.parse(fs, args, tokenUsage, true)
	if !ok {
		return st
	}
	if len(rest) > 0 {
		return c.usageError("unexpected arguments %q", rest)
	}
	switch {
	case worker && admin:
		return c.usageError("--worker and --admin exclude each other")
	case worker:
		req.Kind = job.TokenWorker
	case admin:
		req.Kind = job.TokenAdmin
	default:
		req.Kind = job.TokenNamespace
		if req.Namespace == "" {
			return c.usageError("--namespace NS is required (or --worker, or --admin)")
		}
	}
	if req.Kind != job.TokenNamespace && req.Namespace != "" {
		return c.usageError("--namespace is only for namespace tokens")
	}
	cl := c.client()
	t, err := cl.CreateToken(ctx, req)
	if err != nil {
		return c.fail(ExitFail, "%s: %v", cl.BaseURL(), describe(err))
	}
	if asJSON {
		c.printJSON(t)
		return ExitOK
	}
	fmt.Fprintln(c.stdout, t.Token)
	what := string(t.Kind) + " token"
	if t.Namespace != "" {
		what += " for namespace " + t.Namespace
	}
	fmt.Fprintf(c.stderr, "created %s %s; the secret above is shown only once\n", what, t.ID)
	return ExitOK
}

func (c *command) tokenList(ctx context.Context, args []string) int {
	var asJSON bool
	fs := c.flags()
	fs.BoolVar(&asJSON, "json", false, "")
	rest, st, ok := c.parse(fs, args, tokenUsage, true)
	if !ok {
		return st
	}
	if len(rest) > 0 {
		return c.usageError("unexpected arguments %q", rest)
	}
	cl := c.client()
	list, err := cl.Tokens(ctx)
	if err != nil {
		return c.fail(ExitFail, "%s: %v", cl.BaseURL(), describe(err))
	}
	if asJSON {
		if list == nil {
			list = []api.TokenView{}
		}
		c.printJSON(api.TokenList{Tokens: list})
		return ExitOK
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tNAMESPACE\tNAME\tCREATED")
	now := time.Now()
	for _, t := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Kind, dash(t.Namespace), dash(t.Name), age(now, t.CreatedAt))
	}
	tw.Flush()
	return ExitOK
}

func (c *command) tokenRevoke(ctx context.Context, args []string) int {
	fs := c.flags()
	rest, st, ok := c.parse(fs, args, tokenUsage, true)
	if !ok {
		return st
	}
	if len(rest) == 0 {
		return c.usageError("want the ID of at least one token")
	}
	cl := c.client()
	status := ExitOK
	for _, id := range rest {
		if err := cl.RevokeToken(ctx, id); err != nil {
			status = c.fail(ExitFail, "%s: %v", id, describe(err))
			continue
		}
		fmt.Fprintf(c.stdout, "revoked %s\n", id)
	}
	return status
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
