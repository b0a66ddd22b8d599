package journalcmd

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/journaladmin"
)

func newExportCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export [--admin <host:port> | --file <path>] [--format jsonl|csv|ocsf] [filters] [--output <file>]",
		Short: "Exports journal records as JSONL, CSV or OCSF",
		Args:  cobra.NoArgs,
		RunE:  runE(runExport),
	}
	f := cmd.Flags()
	f.String("format", string(journal.FormatJSONL), "jsonl, csv or ocsf")
	f.String("from", "", "Start time (RFC 3339), inclusive")
	f.String("to", "", "End time (RFC 3339), exclusive: records at that instant are left out")
	f.String("from-seq", "", "First sequence number")
	f.String("to-seq", "", "Last sequence number")
	f.String("scim-id", "", "Only records about this SCIM id")
	f.String("user-name", "", "Only records about this userName")
	f.String("outcome", "", "Only records with this outcome (applied, rejected, denied, failed, ...)")
	f.StringP("output", "o", "-", "Output file; - is stdout")
	return cmd
}

// exportFilterFlags maps export's filter flags to the query parameters of a
// journaladmin.Filter, which the export route takes.
var exportFilterFlags = [][2]string{
	{"from", "from"}, {"to", "to"}, {"from-seq", "from_seq"}, {"to-seq", "to_seq"},
	{"scim-id", "scim_id"}, {"user-name", "user_name"}, {"outcome", "outcome"},
}

func runExport(ctx context.Context, c *env) (int, error) {
	q := url.Values{}
	q.Set("format", c.flags.String("format"))
	for _, m := range exportFilterFlags {
		if v := c.flags.String(m[0]); v != "" {
			q.Set(m[1], v)
		}
	}
	// The same parsing as the admin route, so both paths accept and reject the same input;
	// its errors name query parameters, which flagError puts as the flags they come from.
	f, err := journaladmin.ParseFormat(q)
	if err != nil {
		return fail("%v", flagError(err))
	}
	filter, err := journaladmin.ParseFilter(q)
	if err != nil {
		return fail("%v", flagError(err))
	}
	out, err := createOutput(c.flags.String("output"), c.stdout)
	if err != nil {
		return fail("%v", err)
	}
	defer out.discard()

	var n uint64
	var what string
	if path := c.source(); path != "" {
		what = path
		n, err = journal.ExportFileJournal(ctx, path, c.flags.String("journal"), out, filter.Query(), f)
	} else {
		a, aerr := c.admin()
		if aerr != nil {
			return fail("%v", aerr)
		}
		var item journaladmin.ListItem
		if item, err = a.journalItem(ctx, c.flags.String("journal")); err == nil {
			what = describe(item)
			n, err = a.export(ctx, item.Name, q, out)
		}
	}
	if err != nil {
		return fail("exporting %s: %v", what, err)
	}
	if err := out.commit(); err != nil {
		return fail("%v", err)
	}
	fmt.Fprintf(c.stderr, "exported %d records of %s as %s to %s\n", n, what, f, out.name)
	return 0, nil
}

// flagError puts a query parameter's error (a journaladmin.ParamError) as the flag the
// parameter came from.
func flagError(err error) string {
	var pe *journaladmin.ParamError
	if !errors.As(err, &pe) {
		return err.Error()
	}
	if pe.Param == "format" {
		return "--format: " + pe.Err.Error()
	}
	for _, m := range exportFilterFlags {
		if m[1] == pe.Param {
			return "--" + m[0] + ": " + pe.Err.Error()
		}
	}
	return err.Error()
}
