package journalcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/scimgate/scimgate/caddymodule/provision"
)

// previewPath and previewMappingPath are the running gateway's preview routes
// (caddymodule.PreviewPath and PreviewMappingPath; this package cannot import
// caddymodule, which imports it).
const (
	previewPath        = "/scimgate/preview/policy"
	previewMappingPath = "/scimgate/preview/mapping"
)

// maxPreviewAnswer bounds the answer read: a listing of every user of a large directory.
const maxPreviewAnswer = 512 << 20

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "preview",
		Usage: "--policy <dir> [--data <file>]... | --mapping <file> [--admin <host:port>] [--journal <name>] [--json] [--max-entries <n>]",
		Short: "Shows what a new policy or mapping would change for the directory of a running scimgate",
		Long: `
Runs every user and group of a running gateway's directory through a proposed
policy and through the policy in force, as a re-sync of each resource as it
stands, and lists the resources whose decisions differ:

  denied            its changes would be refused (403)
  deactivated       the app would get a deactivation instead
  leaves_scope      skipped from now on, and it has an account in the app
  skipped           skipped from now on; no account in the app
  drops_attributes  the app would stop receiving these attributes
  drops_members     the app would stop receiving these group memberships
  passes            denied, skipped or deactivated today; would pass

The gateway does the work through its admin endpoint (--admin, default
` + caddy.DefaultAdminListen + `), reading its store in short read transactions
beside live traffic; nothing is written and no app is called. --policy and
--data are paths on the gateway's machine (made absolute here). Without
--policy, the running policy's directory with --data as its data files.

--json prints the report as JSON; the table shows the counts and then one row
per resource (--max-entries bounds the rows; the counts are always complete).

With --mapping <file> instead, every resource's native calls (create, a full
update, deactivate, reactivate, add members, delete) are built under the
proposed mapping file and the mapping in force, and each kind of difference
("update: path", "create: body field dept added", "deactivate: error", ...) is
counted once per resource that shows it, with one resource as a sample (method,
path and body of both; headers are never shown). Nothing is sent to the app.
`,
		CobraFunc: setupPreview,
	})
}

func setupPreview(cmd *cobra.Command) {
	f := cmd.Flags()
	f.String("admin", caddy.DefaultAdminListen, "Address of the running instance's admin endpoint")
	f.String("journal", "", "The gateway, by its journal's name, when the instance has several")
	f.String("policy", "", "The proposed policy directory")
	f.String("mapping", "", "The proposed mapping file (instead of a policy)")
	f.StringArray("data", nil, "A data file of the proposed policy (repeatable)")
	f.Bool("json", false, "Print the report as JSON")
	f.Int("max-entries", 0, "List at most this many resources (0: all)")
	cmd.MarkFlagsMutuallyExclusive("mapping", "policy")
	cmd.MarkFlagsMutuallyExclusive("mapping", "data")
	cmd.Args = cobra.NoArgs
	cmd.RunE = runE(runPreview)
}

func runPreview(ctx context.Context, c *env) (int, error) {
	if file := c.flags.String("mapping"); file != "" {
		return runMappingPreview(ctx, c, file)
	}
	req := map[string]any{"journal": c.flags.String("journal"), "max_entries": c.flags.Int("max-entries")}
	if dir := c.flags.String("policy"); dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return fail("--policy: %v", err)
		}
		req["dir"] = abs
	}
	data, _ := c.flags.GetStringArray("data")
	var files []string
	for _, f := range data {
		abs, err := filepath.Abs(f)
		if err != nil {
			return fail("--data: %v", err)
		}
		files = append(files, abs)
	}
	if req["dir"] == nil && len(files) == 0 {
		return fail("give the proposed policy: --policy <dir> and/or --data <file>")
	}
	req["data"] = files
	raw, err := c.postPreview(ctx, previewPath, req)
	if err != nil {
		return fail("%v", err)
	}
	if c.flags.Bool("json") {
		_, err = c.stdout.Write(raw)
		return 0, err
	}
	var im provision.Impact
	if err := json.Unmarshal(raw, &im); err != nil {
		return fail("reading the preview: %v", err)
	}
	return 0, writeImpactTable(c.stdout, &im)
}

func runMappingPreview(ctx context.Context, c *env, file string) (int, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return fail("--mapping: %v", err)
	}
	raw, err := c.postPreview(ctx, previewMappingPath, map[string]any{"journal": c.flags.String("journal"), "mapping": abs})
	if err != nil {
		return fail("%v", err)
	}
	if c.flags.Bool("json") {
		_, err = c.stdout.Write(raw)
		return 0, err
	}
	var im provision.MappingImpact
	if err := json.Unmarshal(raw, &im); err != nil {
		return fail("reading the preview: %v", err)
	}
	return 0, writeMappingTable(c.stdout, &im)
}

// postPreview sends a preview request to the admin endpoint and reads the answer.
func (c *env) postPreview(ctx context.Context, path string, req map[string]any) ([]byte, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	a, err := c.admin()
	if err != nil {
		return nil, err
	}
	resp, err := a.send(ctx, http.MethodPost, path, nil, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxPreviewAnswer))
	if err != nil {
		return nil, fmt.Errorf("reading the preview: %w", err)
	}
	return raw, nil
}

// writeMappingTable writes the mapping preview for people: the counts of each kind of
// difference, then one sample per kind with the calls under both mappings.
func writeMappingTable(w io.Writer, im *provision.MappingImpact) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "target %q: %d users and %d groups previewed; %d resources would get different calls\n", im.Target, im.Users, im.Groups, im.Differing)
	if len(im.Counts) == 0 {
		return tw.Flush()
	}
	kinds := slices.Sorted(maps.Keys(im.Counts))
	fmt.Fprintln(tw, "\nDIFFERENCE\tRESOURCES\tSAMPLE")
	for _, k := range kinds {
		s := im.Samples[k]
		fmt.Fprintf(tw, "%s\t%d\t%s %s\n", k, im.Counts[k], s.Type, s.Name)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, k := range kinds {
		s := im.Samples[k]
		fmt.Fprintf(w, "\n%s — %s %s (%s):\n", k, s.Type, s.Name, s.ID)
		writeCalls(w, "current", s.Current)
		writeCalls(w, "new    ", s.New)
	}
	return nil
}

func writeCalls(w io.Writer, label string, calls []provision.CallView) {
	if len(calls) == 0 {
		fmt.Fprintf(w, "  %s  (no call)\n", label)
	}
	for _, c := range calls {
		switch {
		case c.Error != "":
			fmt.Fprintf(w, "  %s  error: %s\n", label, c.Error)
		case len(c.Body) > 0:
			fmt.Fprintf(w, "  %s  %s %s %s\n", label, c.Method, c.Path, c.Body)
		default:
			fmt.Fprintf(w, "  %s  %s %s\n", label, c.Method, c.Path)
		}
	}
}

// effectOrder is the order the table lists effects in: the most severe first.
var effectOrder = []provision.Effect{
	provision.EffectDenied, provision.EffectDeactivated, provision.EffectLeavesScope, provision.EffectSkipped,
	provision.EffectDropsAttributes, provision.EffectDropsMembers, provision.EffectPasses,
}

// writeImpactTable writes the report for people: what was compared, the counts, then
// one row per resource.
func writeImpactTable(w io.Writer, im *provision.Impact) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "target %q: %d users and %d groups previewed; policy %s -> %s\n", im.Target, im.Users, im.Groups, short(im.CurrentHash), short(im.NewHash))
	fmt.Fprintf(tw, "accounts deactivated or leaving scope: %d\n\n", im.Deprovisions)
	fmt.Fprintln(tw, "EFFECT\tCOUNT")
	for _, e := range effectOrder {
		fmt.Fprintf(tw, "%s\t%d\n", e, im.Counts[e])
	}
	if len(im.Entries) > 0 {
		fmt.Fprintln(tw, "\nEFFECT\tTYPE\tNAME\tID\tNATIVE ID\tDETAIL")
		entries := slices.Clone(im.Entries)
		slices.SortStableFunc(entries, func(a, b provision.Entry) int {
			return slices.Index(effectOrder, a.Effect) - slices.Index(effectOrder, b.Effect)
		})
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Effect, e.Type, e.Name, e.ID, dash(e.NativeID), detail(e))
		}
	}
	if im.Truncated > 0 {
		fmt.Fprintf(tw, "... and %d more (raise --max-entries, or use --json)\n", im.Truncated)
	}
	return tw.Flush()
}

func detail(e provision.Entry) string {
	var parts []string
	if len(e.Attributes) > 0 {
		parts = append(parts, "attributes: "+strings.Join(e.Attributes, ", "))
	}
	if len(e.Members) > 0 {
		parts = append(parts, "members: "+strings.Join(e.Members, ", "))
	}
	if len(parts) == 0 && len(e.Reasons) > 0 {
		parts = append(parts, e.Reasons[0])
	}
	return strings.Join(parts, "; ")
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return dash(hash)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
