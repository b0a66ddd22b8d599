package journalcmd

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/journaladmin"
)

func newTailCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tail [--admin <host:port> | --file <path>] [-n <count>] [filters] [--json]",
		Short: "Prints the newest records and follows new ones as they commit",
		Args:  cobra.NoArgs,
		RunE:  runE(runTail),
	}
	f := cmd.Flags()
	f.IntP("lines", "n", 10, "How many past records to print first")
	f.String("resource-type", "", "Only records about this resource type (User, Group)")
	f.String("user-name", "", "Only records about this userName")
	f.String("outcome", "", "Only records with this outcome")
	f.Bool("json", false, "Print records as JSON lines instead of columns")
	return cmd
}

func runTail(ctx context.Context, c *env) (int, error) {
	lines := c.flags.Int("lines")
	if lines < 0 || lines > journaladmin.MaxBacklog {
		return fail("-n: want a count from 0 to %d, got %d", journaladmin.MaxBacklog, lines)
	}
	// The flags go to the live route as they are (which checks them) or, with --file,
	// select the records here.
	outcome, err := journaladmin.ParseOutcome(c.flags.String("outcome"))
	if err != nil {
		return fail("--outcome: %v", err)
	}
	filter := journaladmin.Filter{
		ResourceType: c.flags.String("resource-type"),
		Subject:      c.flags.String("user-name"),
		Outcome:      outcome,
	}
	asJSON := c.flags.Bool("json")
	emit := func(e journal.Entry) error { return printEntry(c.stdout, e, asJSON) }

	if path := c.source(); path != "" {
		if err := tailFile(ctx, path, c.flags.String("journal"), lines, filter, emit); err != nil {
			return fail("reading %s: %v", path, err)
		}
		return 0, nil
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, name, err := c.adminJournal(ctx)
	if err != nil {
		return fail("%v", err)
	}
	err = a.follow(ctx, name, lines, filter, emit, c.stderr)
	if err != nil && ctx.Err() == nil {
		return fail("following journal %s: %v", name, err)
	}
	return 0, nil
}

// tailFile prints the last n records of a backup file that pass filter, in one pass.
func tailFile(ctx context.Context, path, name string, n int, filter journaladmin.Filter, emit func(journal.Entry) error) error {
	if n == 0 {
		return nil
	}
	ring := make([]journal.Entry, 0, n)
	next := 0
	err := journaladmin.ReadEntries(ctx, func(ctx context.Context, w io.Writer) error {
		_, err := journal.ExportFileJournal(ctx, path, name, w, journal.Query{}, journal.FormatJSONL)
		return err
	}, func(e journal.Entry) error {
		if !filter.Match(&e.Record) {
			return nil
		}
		if len(ring) < n {
			ring = append(ring, e)
		} else {
			ring[next] = e
			next = (next + 1) % n
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := range ring {
		if err := emit(ring[(next+i)%len(ring)]); err != nil {
			return err
		}
	}
	return nil
}

// printEntry prints a record as one line: columns, or the record's JSON with its hash.
func printEntry(w io.Writer, e journal.Entry, asJSON bool) error {
	r := e.Record
	if asJSON {
		b, err := json.Marshal(journaladmin.Event{Record: r, Hash: hex.EncodeToString(e.Hash[:])})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	status := "-"
	if r.Status != 0 {
		status = strconv.Itoa(r.Status)
	}
	_, err := fmt.Fprintf(w, "%s  %6d  %-12s %-8s %-6s %-8s %-3s %-36s %s  %s\n",
		r.Time.UTC().Format(time.RFC3339), r.Seq, col(r.Client), col(string(r.Action)), col(r.ResourceType),
		col(string(r.Outcome)), status, col(r.SCIMID), col(r.Subject), strings.Join(change.Strings(r.Events), ","))
	return err
}

// col makes a value safe for a terminal column: no control characters (a userName could
// carry escape sequences) and "-" for empty.
func col(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}
