package outboxcmd

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/spf13/cobra"
)

func newShowCommand() *cobra.Command {
	return &cobra.Command{Use: "show <n>", Short: "Shows a queued change with its delivery attempts", RunE: runE(runShow)}
}

func runShow(ctx context.Context, c *env) (int, error) {
	seq, err := c.seqArg()
	if err != nil {
		return fail(err)
	}
	target, err := c.target(ctx)
	if err != nil {
		return fail(err)
	}
	var v json.RawMessage
	if err := c.call(ctx, http.MethodGet, targetPath(target, seq), nil, &v); err != nil {
		return fail(err)
	}
	var pretty any
	_ = json.Unmarshal(v, &pretty)
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return 0, enc.Encode(pretty)
}
