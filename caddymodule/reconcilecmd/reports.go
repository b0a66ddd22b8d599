package reconcilecmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/scimgate/scimgate/caddymodule/reconcile"
)

func newReportsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "reports",
		Short: "Lists the target's stored reconcile reports, newest first",
		Args:  cobra.NoArgs,
		RunE:  runE(runReports),
	}
}

func runReports(ctx context.Context, c *env) (int, error) {
	target, err := c.target(ctx)
	if err != nil {
		return fail("%v", err)
	}
	resp, err := c.call(ctx, http.MethodGet, targetPath(target, "reports"), nil)
	if err != nil {
		return fail("%v", err)
	}
	defer resp.Body.Close()
	var sums []reconcile.Summary
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&sums); err != nil {
		return fail("reading the reports: %v", err)
	}
	if c.flags.String("format") == reconcile.FormatJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(sums); err != nil {
			return fail("%v", err)
		}
		return 0, nil
	}
	tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTARTED\tBY\tFIX\tCOMPLETE\tORPHANED\tMISSING\tNOT DISABLED\tDRIFTED\tMEMBERS +/-\tFIXED")
	for _, s := range sums {
		k := s.Counts
		fmt.Fprintf(tw, "%d\t%s\t%s\t%v\t%v\t%d\t%d\t%d\t%d\t%d/%d\t%d\n", s.ID, s.Started.UTC().Format(time.RFC3339), s.By, s.Fix, s.Complete,
			k.Orphaned, k.Missing, k.NotDisabled, k.Drifted, k.MembersExtra, k.MembersMissing, k.Fixed)
	}
	if err := tw.Flush(); err != nil {
		return fail("%v", err)
	}
	return 0, nil
}
