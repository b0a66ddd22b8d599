package reconcilecmd

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
)

// runReconcile runs a reconcile of the target now (with --fix, and its repairs).
func runReconcile(ctx context.Context, c *env) (int, error) {
	if err := checkFormat(c); err != nil {
		return fail("%v", err)
	}
	target, err := c.target(ctx)
	if err != nil {
		return fail("%v", err)
	}
	fix, _ := c.flags.GetBool("fix")
	resp, err := c.call(ctx, http.MethodPost, targetPath(target, "run"), url.Values{"fix": {strconv.FormatBool(fix)}, "by": {"cli"}})
	if err != nil {
		return fail("%v", err)
	}
	return c.printReport(resp)
}
