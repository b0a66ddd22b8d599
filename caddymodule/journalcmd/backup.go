package journalcmd

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

func newBackupCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup --output <file> [--admin <host:port>]",
		Short: "Downloads a consistent snapshot of the running instance's store",
		Args:  cobra.NoArgs,
		RunE:  runE(runBackup),
	}
	cmd.Flags().StringP("output", "o", "", "Output file (required); - is stdout")
	return cmd
}

func runBackup(ctx context.Context, c *env) (int, error) {
	if c.source() != "" {
		return fail("backup reads a running instance (--admin); a --file is a backup already: copy it")
	}
	dest := c.flags.String("output")
	if dest == "" {
		return fail("--output is required (a file, or - for stdout)")
	}
	a, err := c.admin()
	if err != nil {
		return fail("%v", err)
	}
	item, err := a.journalItem(ctx, c.flags.String("journal"))
	if err != nil {
		return fail("%v", err)
	}
	name := item.Name
	out, err := createOutput(dest, c.stdout)
	if err != nil {
		return fail("%v", err)
	}
	defer out.discard()
	n, err := a.backup(ctx, name, out)
	if err != nil {
		return fail("backing up journal %s: %v", name, err)
	}
	if err := out.commit(); err != nil {
		return fail("%v", err)
	}
	store := item.Store
	if store == "" {
		store = "the store of journal " + name
	}
	fmt.Fprintf(c.stderr, "backed up %s (journal %s and the directory) as a bbolt file: %d bytes to %s (check it with: journal verify --file %s)\n", store, name, n, out.name, out.name)
	return 0, nil
}
