// Package journalcmd is the `journal` command that every Caddy built with scimgate has:
// verify, export, back up and follow the audit journal, either through a running
// instance's admin endpoint (the routes of ../journaladmin) or on a backup file, never by
// opening the live database, which the running instance holds locked.
//
// One file per subcommand (verify.go, export.go, backup.go, tail.go, watch.go); this file
// registers the command and holds what they share; client.go talks to the admin endpoint
// and output.go writes downloads. preview.go is the `preview` command, which shares the
// admin client: what a proposed policy or mapping would change for a running gateway's
// directory (caddymodule's preview routes).
package journalcmd

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "journal",
		Usage: "verify|export|backup|tail|watch [--admin <host:port> | --file <path>] [--journal <name>]",
		Short: "Verifies, exports, backs up, follows and watches scimgate's audit journal",
		Long: `
Works on the audit journal of a running scimgate through its admin endpoint
(--admin, default ` + caddy.DefaultAdminListen + `), or on a backup file (--file),
read-only. The live database is never opened: the running instance holds it.

  journal verify  [--public-key <file|base64>]... [--subset]
      Checks the hash chain and the checkpoints, prints one line and exits 0
      when the journal verifies, ` + strconv.Itoa(ExitNotVerified) + ` when it does not (naming the
      first bad sequence number), 1 when it could not be checked. Through
      --admin without --public-key the instance verifies with its configured
      keys; with --public-key the journal is exported and verified here, with
      your copy of the key. Repeat --public-key for each key that signed
      checkpoints (a rotated key): each checkpoint must verify with one of
      them. With a public key, records that no signed checkpoint covers do not
      verify (unvouched), except the newest ones after the last checkpoint,
      which the line names. --file takes a backup or a JSONL export; give
      --subset to verify a filtered export as the subset it is.

  journal export  [--format jsonl|csv|ocsf] [--from <RFC 3339>] [--to <RFC 3339>]
                  [--from-seq <n>] [--to-seq <n>] [--scim-id <id>]
                  [--user-name <userName>] [--outcome <outcome>] [--output <file>]
      Writes the selected records (default: all, as JSONL, to stdout): --from is
      inclusive, --to exclusive (a day is --from 2026-01-31T00:00:00Z --to
      2026-02-01T00:00:00Z). JSONL is the verifiable form; CSV and OCSF are for
      spreadsheets and SIEMs.

  journal backup  --output <file>
      Downloads a consistent snapshot of the running instance's store (the
      directory and the journal) as a bbolt file, from a gateway on etcd too
      (one revision of the fleet's store): a file that --file accepts and
      that store copy --from takes.

  journal tail    [-n <count>] [--resource-type <type>] [--user-name <userName>]
                  [--outcome <outcome>] [--json]
      Through --admin, prints the last n records and then follows new ones as
      they commit, until interrupted. With --file, prints the last n records.

  journal watch   [--listen <127.0.0.1:0>] [--open]
      Through --admin, serves the journal's live web page on a loopback address
      and prints the URL to open in a browser, until interrupted. The admin
      endpoint refuses pages typed into a browser's address bar (they carry no
      Origin it allows); watch serves only that page and its live stream, GET
      only, and forwards them with the admin endpoint's own origin. --open also
      starts the default browser on it.

--journal names the journal when the instance has several (default: the only one).
`,
		CobraFunc: setup,
	})
}

// setup adds the subcommands and their flags to the journal command.
func setup(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.String("admin", caddy.DefaultAdminListen, "Address of the running instance's admin endpoint")
	pf.String("file", "", "A backup file (or, for verify, a JSONL export) to read instead")
	pf.String("journal", "", "Journal name, when the instance has several")
	cmd.MarkFlagsMutuallyExclusive("admin", "file")

	cmd.AddCommand(newVerifyCommand(), newExportCommand(), newBackupCommand(), newTailCommand(), newWatchCommand())
}

// runFunc runs one subcommand. It returns the exit status and an error to report.
type runFunc func(ctx context.Context, c *env) (int, error)

// env is what a subcommand works with.
type env struct {
	flags  caddycmd.Flags
	stdout io.Writer
	stderr io.Writer
}

// runE adapts f to cobra through Caddy's wrapper, which logs the error and turns a status
// above 1 into the process's exit code.
func runE(f runFunc) func(*cobra.Command, []string) error {
	return RunE(func(ctx context.Context, cmd *cobra.Command, args []string) (int, error) {
		return f(ctx, &env{flags: caddycmd.Flags{FlagSet: cmd.Flags()}, stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr()})
	})
}

// fail is the result of a command that could not do its work.
func fail(format string, args ...any) (int, error) {
	return caddy.ExitCodeFailedStartup, fmt.Errorf(format, args...)
}

// source returns the backup file to read, or "" to use the admin endpoint.
func (c *env) source() string { return c.flags.String("file") }

// admin returns a client of the admin endpoint.
func (c *env) admin() (*adminClient, error) { return newAdminClient(c.flags.String("admin")) }

// adminJournal connects to the admin endpoint and resolves the journal to work on.
func (c *env) adminJournal(ctx context.Context) (*adminClient, string, error) {
	a, err := c.admin()
	if err != nil {
		return nil, "", err
	}
	name, err := a.journalName(ctx, c.flags.String("journal"))
	if err != nil {
		return nil, "", err
	}
	return a, name, nil
}
