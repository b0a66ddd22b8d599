package outboxcmd

import (
	"context"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"
)

// newPauseCommand is pause or resume.
func newPauseCommand(action string) *cobra.Command {
	short := "Pauses the target's deliveries (kept across restarts)"
	if action == "resume" {
		short = "Resumes the target's deliveries"
	}
	return &cobra.Command{Use: action, Short: short, Args: cobra.NoArgs, RunE: runE(func(ctx context.Context, c *env) (int, error) {
		q, err := c.by()
		if err != nil {
			return fail(err)
		}
		target, err := c.target(ctx)
		if err != nil {
			return fail(err)
		}
		if err := c.call(ctx, http.MethodPost, targetPath(target, action), q, nil); err != nil {
			return fail(err)
		}
		fmt.Fprintf(c.stdout, "%s: %sd\n", target, action)
		return 0, nil
	})}
}
