package reconcilecmd

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/scimgate/scimgate/caddymodule/reconcile"
)

func newFixCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "fix <id>",
		Short: "Makes the repairs of a stored reconcile report's findings",
		Args:  cobra.ExactArgs(1),
		RunE:  runE(runFix),
	}
}

func runFix(ctx context.Context, c *env) (int, error) {
	id, err := reportID(c)
	if err != nil {
		return fail("%v", err)
	}
	if err := checkFormat(c); err != nil {
		return fail("%v", err)
	}
	target, err := c.target(ctx)
	if err != nil {
		return fail("%v", err)
	}
	resp, err := c.call(ctx, http.MethodPost, targetPath(target, "reports", strconv.FormatUint(id, 10), "fix"), url.Values{"by": {"cli"}})
	if err != nil {
		return fail("%v", err)
	}
	return c.printReport(resp)
}

// reportID is the report id argument.
func reportID(c *env) (uint64, error) {
	id, err := strconv.ParseUint(c.args[0], 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("report id %q is not a positive number (reconcile reports lists them)", c.args[0])
	}
	return id, nil
}

// checkFormat refuses an unknown --format before anything is run.
func checkFormat(c *env) error {
	if f := c.flags.String("format"); !slices.Contains([]string{reconcile.FormatTable, reconcile.FormatJSON, reconcile.FormatCSV}, f) {
		return fmt.Errorf("--format: %q is not table, json or csv", f)
	}
	return nil
}
