package outboxcmd

import (
	"context"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"
)

func newRetryCommand() *cobra.Command {
	return &cobra.Command{Use: "retry <n>", Short: "Sends a dead letter again", RunE: runE(taskAction("retry", "dead letter %s of %s is queued again\n"))}
}

// taskAction runs an action on one queued change (retry, drop).
func taskAction(action, done string) runFunc {
	return func(ctx context.Context, c *env) (int, error) {
		seq, err := c.seqArg()
		if err != nil {
			return fail(err)
		}
		q, err := c.by()
		if err != nil {
			return fail(err)
		}
		target, err := c.target(ctx)
		if err != nil {
			return fail(err)
		}
		if err := c.call(ctx, http.MethodPost, targetPath(target, seq, action), q, nil); err != nil {
			return fail(err)
		}
		fmt.Fprintf(c.stdout, done, seq, target)
		return 0, nil
	}
}
