// Package reconcilecmd is the `reconcile` command that every Caddy built with scimgate
// has: reconcile a running gateway's target with its app, list and show the stored
// reports, and make the repairs of one, through the instance's admin endpoint (the routes
// of ../reconcileadmin).
//
// One file per subcommand (run.go, reports.go, show.go, fix.go); this file registers the
// command and holds what they share.
package reconcilecmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/scimgate/scimgate/caddymodule/journalcmd"
	"github.com/scimgate/scimgate/caddymodule/reconcile"
	"github.com/scimgate/scimgate/caddymodule/reconcileadmin"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "reconcile",
		Usage: "[--fix] [--target <name>] [--format table|json|csv] [--output <file>] [--admin <host:port>] | reports | show <id> | fix <id>",
		Short: "Reconciles a running scimgate's app with its directory: orphaned, missing, not disabled, drifted accounts and memberships",
		Long: `
Asks the running scimgate (through its admin endpoint, --admin, default ` + caddy.DefaultAdminListen + `) to
read every account, group and membership of the target's app through the
mapping's list calls and compare them with the directory. Prints the report:
orphaned accounts (in the app, not in the directory, deleted there, or out of
scope but active), missing accounts (in the directory and in scope, none in the
app), not disabled (inactive in the directory, active in the app), drifted
attributes (the app's values against what the mapping sends) and membership
drift (members the app's group has and the directory's lacks, and the other
way round). Every run is stored (read it again with show) and journaled.

  reconcile [--fix]
      Runs a reconcile now. With --fix the gateway then makes the calls that
      bring the app back in line: creates the missing, disables the not
      disabled, sends drifted attributes, corrects memberships. Each repair is
      decided by the policy, counted by its brake and journaled (action repair,
      client reconcile, request_id the run's id). Orphans are disabled only when
      the target says "orphans disable"; nothing is ever deleted.

  reconcile reports
      Lists the stored reports of the target, newest first.

  reconcile show <id>
      Prints a stored report.

  reconcile fix <id>
      Makes the repairs of a stored report's findings (each checked against the
      directory as it is now) and prints the new report.

--target names the target when the instance has several (default: the only one).
--format is table (default), json or csv; --output writes to a file.
`,
		CobraFunc: setup,
	})
}

func setup(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.String("admin", caddy.DefaultAdminListen, "Address of the running instance's admin endpoint")
	pf.String("target", "", "Target name, when the instance has several")
	pf.String("format", reconcile.FormatTable, "Output format: table, json or csv")
	pf.String("output", "", "Write the report to this file instead of stdout")
	cmd.Flags().Bool("fix", false, "Repair what the reconcile finds")
	cmd.Args = cobra.NoArgs
	cmd.RunE = runE(runReconcile)
	cmd.AddCommand(newReportsCommand(), newShowCommand(), newFixCommand())
}

// runFunc runs one subcommand with its flags and arguments; it returns the exit status.
type runFunc func(ctx context.Context, c *env) (int, error)

type env struct {
	flags  caddycmd.Flags
	args   []string
	stdout io.Writer
}

func runE(f runFunc) func(*cobra.Command, []string) error {
	return journalcmd.RunE(func(ctx context.Context, cmd *cobra.Command, args []string) (int, error) {
		return f(ctx, &env{flags: caddycmd.Flags{FlagSet: cmd.Flags()}, args: args, stdout: cmd.OutOrStdout()})
	})
}

func fail(format string, args ...any) (int, error) {
	return caddy.ExitCodeFailedStartup, fmt.Errorf(format, args...)
}

// call makes one request to the admin endpoint.
func (c *env) call(ctx context.Context, method, path string, q url.Values) (*http.Response, error) {
	return journalcmd.AdminRequest(ctx, c.flags.String("admin"), method, path, q)
}

// target returns --target, or the only target the instance can reconcile.
func (c *env) target(ctx context.Context) (string, error) {
	if t := c.flags.String("target"); t != "" {
		return t, nil
	}
	resp, err := c.call(ctx, http.MethodGet, reconcileadmin.Prefix, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var list []reconcileadmin.TargetItem
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&list); err != nil {
		return "", fmt.Errorf("reading the target list: %w", err)
	}
	switch len(list) {
	case 0:
		return "", fmt.Errorf("the instance at %s has no target that can be reconciled (a target whose mapping has a list call)", c.flags.String("admin"))
	case 1:
		return list[0].Target, nil
	}
	names := make([]string, len(list))
	for i, t := range list {
		names[i] = t.Target
	}
	return "", fmt.Errorf("the instance has several targets (%s): choose one with --target", strings.Join(names, ", "))
}

// targetPath is the admin path of a target's route.
func targetPath(target string, route ...string) string {
	return reconcileadmin.Prefix + "/" + url.PathEscape(target) + "/" + strings.Join(route, "/")
}

// printReport reads a report answered as JSON and writes it in --format.
func (c *env) printReport(resp *http.Response) (int, error) {
	defer resp.Body.Close()
	var rep reconcile.Report
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return fail("reading the report: %v", err)
	}
	w := c.stdout
	if path := c.flags.String("output"); path != "" {
		// The report names accounts and their attributes: readable by its owner only.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return fail("creating %s: %v", path, err)
		}
		if err := rep.Write(f, c.flags.String("format")); err != nil {
			_ = f.Close()
			return fail("%v", err)
		}
		if err := f.Close(); err != nil {
			return fail("writing %s: %v", path, err)
		}
		return 0, nil
	}
	if err := rep.Write(w, c.flags.String("format")); err != nil {
		return fail("%v", err)
	}
	return 0, nil
}
