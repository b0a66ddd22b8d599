package outboxcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/outboxadmin"
)

func newTargetsCommand() *cobra.Command {
	return &cobra.Command{Use: "targets", Short: "Lists the targets with their queued changes and dead letters", Args: cobra.NoArgs, RunE: runE(runTargets)}
}

func runTargets(ctx context.Context, c *env) (int, error) {
	var targets []outboxadmin.TargetItem
	if err := c.call(ctx, http.MethodGet, outboxadmin.Prefix, nil, &targets); err != nil {
		return fail(err)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tPENDING\tHELD\tDEAD\tOLDEST\tPAUSED")
	for _, t := range targets {
		oldest := "-"
		if t.Oldest != nil {
			oldest = time.Since(*t.Oldest).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%v\n", t.Target, t.Pending, t.Held, t.Dead, oldest, t.Paused)
	}
	return 0, tw.Flush()
}

func newListCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "list", Short: "Lists the target's queued changes", Args: cobra.NoArgs, RunE: runE(runList)}
	cmd.Flags().String("state", "", "pending or dead (default: both)")
	cmd.Flags().String("scim-id", "", "Only the changes of this resource")
	cmd.Flags().Int("limit", outbox.MaxList, fmt.Sprintf("At most this many changes, oldest first (1 to %d)", outbox.MaxList))
	cmd.Flags().Bool("json", false, "Print JSON instead of a table")
	return cmd
}

func runList(ctx context.Context, c *env) (int, error) {
	target, err := c.target(ctx)
	if err != nil {
		return fail(err)
	}
	q := url.Values{}
	if s := c.flags.String("state"); s != "" {
		q.Set("state", s)
	}
	if id := c.flags.String("scim-id"); id != "" {
		q.Set("scim_id", id)
	}
	limit := c.flags.Int("limit")
	if limit < 1 || limit > outbox.MaxList {
		return fail(fmt.Errorf("--limit %d: want 1 to %d", limit, outbox.MaxList))
	}
	q.Set("limit", strconv.Itoa(limit))
	var views []outbox.View
	if err := c.call(ctx, http.MethodGet, targetPath(target), q, &views); err != nil {
		return fail(err)
	}
	if c.flags.Bool("json") {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return 0, enc.Encode(views)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "N\tSTATE\tTYPE\tSCIM ID\tSUBJECT\tEVENTS\tQUEUED\tATTEMPTS\tLAST ANSWER")
	for _, v := range views {
		state := v.State
		if v.Behind != 0 {
			state = fmt.Sprintf("held behind %d", v.Behind)
		}
		t := v.Task
		last := "-"
		switch {
		case t.LastError != "":
			last = fmt.Sprintf("%d %s", t.LastStatus, t.LastError)
		case v.Reason != "":
			last = v.Reason // never tried: why it waits
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", v.Seq, state, t.Type, t.ID, t.Subject,
			strings.Join(change.Strings(t.Events), ","), t.Queued.UTC().Format(time.RFC3339), t.Attempts, last)
	}
	if err := tw.Flush(); err != nil {
		return 1, err
	}
	if len(views) == limit {
		// The listing stops at the limit: say so, rather than look like the whole outbox.
		fmt.Fprintf(c.stderr, "the first %d changes; there may be more (`outbox targets` counts them; narrow with --state or --scim-id)\n", limit)
	}
	return 0, nil
}
