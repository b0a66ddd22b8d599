package reconcilecmd

import (
	"context"
	"net/http"
	"strconv"

	"github.com/spf13/cobra"
)

func newShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show <id>",
		Short: "Prints a stored reconcile report",
		Args:  cobra.ExactArgs(1),
		RunE:  runE(runShow),
	}
}

func runShow(ctx context.Context, c *env) (int, error) {
	id, err := reportID(c)
	if err != nil {
		return fail("%v", err)
	}
	target, err := c.target(ctx)
	if err != nil {
		return fail("%v", err)
	}
	resp, err := c.call(ctx, http.MethodGet, targetPath(target, "reports", strconv.FormatUint(id, 10)), nil)
	if err != nil {
		return fail("%v", err)
	}
	return c.printReport(resp)
}
