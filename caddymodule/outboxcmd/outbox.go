// Package outboxcmd is the `outbox` command that every Caddy built with scimgate has: it
// lists a target's queued changes and dead letters, shows one with its attempts, sends a
// dead letter again, drops a change, and pauses and resumes a target's deliveries, through
// a running instance's admin endpoint (the routes of ../outboxadmin). Every change it makes
// is journaled with --by (default: the user running the command).
//
// One file per subcommand (list.go, show.go, retry.go, drop.go, pause.go); this file
// registers the command and holds what they share.
package outboxcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/user"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/scimgate/scimgate/caddymodule/journalcmd"
	"github.com/scimgate/scimgate/caddymodule/outboxadmin"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "outbox",
		Usage: "targets|list|show|retry|drop|pause|resume [--admin <host:port>] [--target <name>] [--by <name>]",
		Short: "Lists, retries, drops, pauses and resumes scimgate's queued deliveries",
		Long: `
Works on the outboxes of a running scimgate (targets with delivery queued or
fallback) through its admin endpoint (--admin, default ` + caddy.DefaultAdminListen + `).

  outbox targets
      Each target with its queued changes, those held behind a dead letter, the
      dead letters, the oldest queued change and whether it is paused.

  outbox list [--state pending|dead] [--scim-id <id>] [--json]
      The target's queued changes, oldest first: number, state (pending,
      waiting, in_flight, held behind dead letter N, dead), resource, events,
      attempts and the app's last answer.

  outbox show <n>
      One queued change with its delivery attempts (their journal records), as JSON.

  outbox retry <n>    sends dead letter n again; the resource's later changes follow it
  outbox drop <n>     removes change n: the app never gets it
  outbox pause        no deliveries until resume (kept across restarts)
  outbox resume

--target names the target when the instance has several (default: the only one).
retry, drop, pause and resume are journaled with --by (default: your user name).
`,
		CobraFunc: setup,
	})
}

func setup(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.String("admin", caddy.DefaultAdminListen, "Address of the running instance's admin endpoint")
	pf.String("target", "", "Target name, when the instance has several")
	pf.String("by", "", "Who acts, for the journal (default: your user name)")
	cmd.AddCommand(newTargetsCommand(), newListCommand(), newShowCommand(), newRetryCommand(), newDropCommand(),
		newPauseCommand("pause"), newPauseCommand("resume"))
}

// env is what a subcommand works with.
type env struct {
	flags  caddycmd.Flags
	args   []string
	stdout io.Writer
	stderr io.Writer
}

type runFunc func(ctx context.Context, c *env) (int, error)

// runE adapts f to cobra through Caddy's wrapper, which logs the error and turns a status
// above 1 into the process's exit code.
func runE(f runFunc) func(*cobra.Command, []string) error {
	return journalcmd.RunE(func(ctx context.Context, cmd *cobra.Command, args []string) (int, error) {
		return f(ctx, &env{flags: caddycmd.Flags{FlagSet: cmd.Flags()}, args: args, stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr()})
	})
}

func fail(err error) (int, error) { return caddy.ExitCodeFailedStartup, err }

// call sends one request to the admin endpoint and decodes its JSON answer into out.
func (c *env) call(ctx context.Context, method, path string, q url.Values, out any) error {
	resp, err := journalcmd.AdminRequest(ctx, c.flags.String("admin"), method, path, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// target returns --target, or the only target of the instance.
func (c *env) target(ctx context.Context) (string, error) {
	if t := c.flags.String("target"); t != "" {
		return t, nil
	}
	var targets []outboxadmin.TargetItem
	if err := c.call(ctx, http.MethodGet, outboxadmin.Prefix, nil, &targets); err != nil {
		return "", err
	}
	switch len(targets) {
	case 0:
		return "", fmt.Errorf("the instance has no target (none configured, or none with an outbox yet)")
	case 1:
		return targets[0].Target, nil
	}
	return "", fmt.Errorf("the instance has %d targets: name one with --target", len(targets))
}

// targetPath is the admin path of the target's route (or of one of its tasks' routes).
func targetPath(target string, parts ...string) string {
	p := outboxadmin.Prefix + "/" + url.PathEscape(target)
	for _, s := range parts {
		p += "/" + s
	}
	return p
}

// by is who acts: --by, or the user running the command.
func (c *env) by() (url.Values, error) {
	by := c.flags.String("by")
	if by == "" {
		u, err := user.Current()
		if err != nil || u.Username == "" {
			return nil, fmt.Errorf("say who you are with --by (the journal records it)")
		}
		by = u.Username
	}
	return url.Values{"by": {by}}, nil
}

// seqArg is the task number argument.
func (c *env) seqArg() (string, error) {
	if len(c.args) != 1 {
		return "", fmt.Errorf("give the number of one queued change (outbox list shows them)")
	}
	if n, err := strconv.ParseUint(c.args[0], 10, 64); err != nil || n == 0 {
		return "", fmt.Errorf("%q is not the number of a queued change", c.args[0])
	}
	return c.args[0], nil
}
