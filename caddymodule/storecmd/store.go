// Package storecmd is the `store` command that every Caddy built with scimgate has. Its one
// subcommand, `store copy`, moves a gateway's whole store (directory, id map, outbox, policy
// counts and journal) from the embedded bbolt file into an etcd cluster, where a fleet of
// gateways shares it, and back, and verifies the copy: every journal's hash chain and
// checkpoints, its head, the number of keys in every bucket and a digest of all data.
//
// This file registers the command; copy.go runs a copy and end.go opens its two ends.
package storecmd

import (
	"context"
	"errors"
	"fmt"
	"io"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/scimgate/scimgate/caddymodule/journalcmd"
	"github.com/scimgate/scimgate/caddymodule/storeconfig"
)

// Exit statuses of store copy.
const (
	// ExitFailed: the copy or its verification failed (or could not run).
	ExitFailed = 1
	// ExitUsage: the command line is wrong; nothing was read or written.
	ExitUsage = 2
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "store",
		Usage: "copy --from <file|etcd> --to <file|etcd> [--config <Caddyfile> | --endpoints <urls> ...]",
		Short: "Copies scimgate's store between a bbolt file and etcd, verified",
		Long: `
Moves a gateway's store (its directory, id map, outbox, policy counts and
journal) between the embedded bbolt file and an etcd cluster, where a fleet
of gateways shares it, and verifies the copy.

  store copy --from <file|etcd> --to <file|etcd>

Each end is a bbolt file's path, or the word etcd: the etcd store named by
the store etcd { ... } block of --config (a Caddyfile, or JSON when the name
ends in .json), or by the flags --endpoints, --prefix, --username,
--password-env or --password-file, --ca, --cert, --key and --server-name.
The password is never given on the command line: --password-env names the
environment variable that holds it.

  scimgate store copy --from scimgate-data/scimgate.db --to etcd \
      --endpoints https://10.0.0.1:2379,https://10.0.0.2:2379 --prefix /scimgate/ \
      --username scimgate --password-env ETCD_PASSWORD --ca etcd-ca.pem
  scimgate store copy --from etcd --config Caddyfile.fleet --to back.db

The destination must be empty: a file that does not exist yet, or an etcd
prefix that holds no store. A bbolt source must not be in use: a running
gateway holds its file locked; stop it, or copy a backup instead
(scimgate journal backup --output copy.db).

A copy from etcd reads one consistent revision: writes made after it are not
copied. Stop the fleet's writes first (stop the gateways, or disable Entra
provisioning), or treat the copy as a backup as of that revision.

After copying, store copy verifies the destination: every journal's hash
chain and checkpoints, each journal's head (last sequence number and hash)
against the source's, the number of keys in every bucket and a digest of
all keys, values and sequences (signatures are not checked: use
journal verify --public-key on the result for that). A bbolt
destination is written to a temporary file and appears only once verified;
an etcd destination that fails keeps what was written, and the error says
how to clear it.

Exit status: 0 when the copy verifies, 1 when it failed or does not verify,
2 for a wrong command line.
`,
		CobraFunc: setup,
	})
}

func setup(cmd *cobra.Command) {
	cmd.AddCommand(newCopyCommand())
}

// usageError is a wrong command line: exit status 2, nothing read or written.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// runE adapts run to cobra through the wrapper the other scimgate commands use, which
// reports the error and turns the status into the process's exit code.
func runE(run func(ctx context.Context, f caddycmd.Flags, stdout io.Writer) error) func(*cobra.Command, []string) error {
	return journalcmd.RunE(func(ctx context.Context, cmd *cobra.Command, _ []string) (int, error) {
		err := run(ctx, caddycmd.Flags{FlagSet: cmd.Flags()}, cmd.OutOrStdout())
		switch {
		case err == nil:
			return 0, nil
		case errors.As(err, new(usageError)):
			return ExitUsage, err
		default:
			return ExitFailed, err
		}
	})
}

// etcdWord is the value of --from or --to that names the etcd store.
const etcdWord = storeconfig.Etcd
