package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/mapping"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/provision"
)

func init() {
	caddy.RegisterModule(PreviewAdmin{})
}

// PreviewPath is the admin route that previews a policy against a running gateway;
// PreviewMappingPath the one that previews a mapping file.
const (
	PreviewPath        = "/scimgate/preview/policy"
	PreviewMappingPath = "/scimgate/preview/mapping"
)

// PreviewRequest is the body of POST PreviewPath: the proposed policy, as paths on the
// gateway's machine (as in the policy block), and which gateway to preview it on.
type PreviewRequest struct {
	// Journal names the gateway by its journal ("" when only one runs).
	Journal string `json:"journal,omitempty"`
	// Dir is the proposed policy directory; Data its extra data files. Without Dir, the
	// running policy's directory with Data in place of its data files.
	Dir  string   `json:"dir,omitempty"`
	Data []string `json:"data,omitempty"`
	// MaxEntries bounds the listed resources (the counts are complete); 0 for all.
	MaxEntries int `json:"max_entries,omitempty"`
	// Mapping is the proposed mapping file (PreviewMappingPath only).
	Mapping string `json:"mapping,omitempty"`
}

// maxPreviewBody bounds the request body: a few paths.
const maxPreviewBody = 64 << 10

// PreviewAdmin is the admin.api.scimgate_preview module: POST /scimgate/preview/policy
// runs the directory of a running gateway through a proposed policy, read-only beside live
// traffic (the store is read in short transactions of the process that holds it), and
// answers the provision.Impact as JSON; POST /scimgate/preview/mapping builds every
// resource's native calls under a proposed mapping file and the mapping in force, and
// answers the provision.MappingImpact (no app is called). Both are protected like the
// rest of the admin API.
type PreviewAdmin struct{}

// CaddyModule returns the Caddy module information.
func (PreviewAdmin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.scimgate_preview",
		New: func() caddy.Module { return new(PreviewAdmin) },
	}
}

// Routes returns the preview route.
func (PreviewAdmin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: PreviewPath, Handler: caddy.AdminHandlerFunc(servePreview)},
		{Pattern: PreviewMappingPath, Handler: caddy.AdminHandlerFunc(servePreview)},
	}
}

func servePreview(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return previewError(http.StatusMethodNotAllowed, errors.New("POST a JSON body: {\"dir\": \"<policy directory>\", \"data\": [\"<data file>\"], \"journal\": \"<name>\"} (policy) or {\"mapping\": \"<mapping file>\"} (mapping)"))
	}
	var req PreviewRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxPreviewBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return previewError(http.StatusBadRequest, fmt.Errorf("reading the preview request: %w", err))
	}
	g, err := runningGateway(req.Journal)
	if err != nil {
		return err
	}
	var im any
	if r.URL.Path == PreviewMappingPath {
		im, err = g.previewMapping(req)
	} else {
		im, err = g.previewPolicy(r.Context(), req)
	}
	if err != nil {
		return previewError(http.StatusUnprocessableEntity, err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(im)
}

// previewMapping loads the proposed mapping file as the target block would (placeholders
// resolved) and compares its calls with the mapping in force.
func (g *Handler) previewMapping(req PreviewRequest) (*provision.MappingImpact, error) {
	if g.target == nil {
		return nil, errors.New("the gateway has no target, so no mapping to compare with")
	}
	if req.Mapping == "" {
		return nil, errors.New("give the proposed mapping file")
	}
	repl := caddy.NewReplacer()
	m, err := mapping.Load(repl.ReplaceAll(req.Mapping, ""), func(s string) (string, error) { return repl.ReplaceOrErr(s, true, true) })
	if err != nil {
		return nil, err
	}
	return g.engine.MappingImpact(m, 0)
}

func previewError(status int, err error) error {
	return caddy.APIError{HTTPStatus: status, Err: err, Message: err.Error()}
}

// previewPolicy loads the proposed policy as this gateway's policy block would (its query
// and timeout) and previews it against the policy in force.
func (g *Handler) previewPolicy(ctx context.Context, req PreviewRequest) (*provision.Impact, error) {
	if g.Policy == nil && req.Dir == "" {
		return nil, errors.New("the gateway has no policy block: give the proposed policy's dir")
	}
	proposed := PolicyConfig{Dir: req.Dir, Data: req.Data}
	if g.Policy != nil {
		proposed.Query, proposed.Timeout = g.Policy.Query, g.Policy.Timeout
		if proposed.Dir == "" {
			proposed.Dir = g.Policy.Dir
		}
	}
	eng, err := proposed.Provision(caddy.NewReplacer(), g.logger)
	if err != nil {
		return nil, err
	}
	defer eng.Close()
	return g.engine.PolicyImpact(ctx, g.policy, eng, provision.ImpactOptions{MaxEntries: req.MaxEntries})
}

// gateways lists the provisioned gateways per store file, in provision order: the last is
// the configuration in force (Caddy provisions a new configuration before it cleans up the
// old one, and cleans up a new one that failed).
var gateways = struct {
	sync.Mutex
	byStore map[string][]*Handler
}{byStore: map[string][]*Handler{}}

// registerGateway adds g as the newest configuration of its store and returns the one in
// force before it (nil when none).
func registerGateway(g *Handler) (previous *Handler) {
	gateways.Lock()
	defer gateways.Unlock()
	list := gateways.byStore[g.storeKey]
	if len(list) > 0 {
		previous = list[len(list)-1]
	}
	gateways.byStore[g.storeKey] = append(list, g)
	return previous
}

func unregisterGateway(g *Handler) {
	gateways.Lock()
	defer gateways.Unlock()
	list := slices.DeleteFunc(gateways.byStore[g.storeKey], func(h *Handler) bool { return h == g })
	if len(list) == 0 {
		delete(gateways.byStore, g.storeKey)
		return
	}
	gateways.byStore[g.storeKey] = list
}

// runningGateway finds the configuration in force of the gateway whose journal is named
// name (the only one when name is empty).
func runningGateway(name string) (*Handler, error) {
	gateways.Lock()
	defer gateways.Unlock()
	var found []*Handler
	var names []string
	for _, list := range gateways.byStore {
		g := list[len(list)-1]
		names = append(names, g.store.journal.Name())
		if name == "" || g.store.journal.Name() == name {
			found = append(found, g)
		}
	}
	slices.Sort(names)
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(names) == 0:
		return nil, previewError(http.StatusNotFound, errors.New("no scim_gateway is running in this instance"))
	case len(found) == 0:
		return nil, previewError(http.StatusNotFound, fmt.Errorf("no gateway with the journal %q (running: %s)", name, strings.Join(names, ", ")))
	}
	return nil, previewError(http.StatusConflict, fmt.Errorf("several gateways run (journals %s): name one with journal", strings.Join(names, ", ")))
}

// checkReloadBrake refuses a reload whose new policy would deactivate, or take out of
// scope, more of the app's accounts than the new policy's own mass-deprovision brake lets
// through in an hour: the preview counts them (provision.Impact.Deprovisions), and the new
// policy is asked whether it would let the last of them through after all the others. A
// policy block with force_reload skips the check. previous is the configuration in force;
// one without a policy lets every change through, so the reload that brings the first
// policy is checked against that.
func (g *Handler) checkReloadBrake(previous *Handler) error {
	if g.policy == nil || previous == nil || g.Target == nil ||
		(previous.policy != nil && previous.policy.Hash() == g.policy.Hash()) {
		return nil
	}
	if g.Policy.ForceReload {
		// Said where operators and their log alerts look: nothing else marks a reload
		// let through past the brake's check.
		g.logger.Warn("policy reloaded without the mass-deprovision check (force_reload): the accounts it deactivates or takes out of scope were not counted; remove force_reload once this policy is in force",
			zap.String("policy", g.Policy.Dir), zap.String("policy_hash", g.policy.Hash()))
		return nil
	}
	start := time.Now()
	im, err := g.engine.PolicyImpact(context.Background(), previous.policy, g.policy, provision.ImpactOptions{MaxEntries: 1})
	if err != nil {
		return fmt.Errorf("policy %s: previewing the new policy before the reload: %w", g.Policy.Dir, err)
	}
	g.logger.Info("previewed the new policy against the one in force",
		zap.Int("users", im.Users), zap.Int("groups", im.Groups), zap.Any("counts", im.Counts),
		zap.Int("deprovisions", im.Deprovisions), zap.Duration("took", time.Since(start)))
	if im.Deprovisions == 0 {
		return nil
	}
	d, err := g.policy.WithTimeout(10*time.Second).Decide(context.Background(), brakeProbe(im))
	if d.Allow {
		return nil
	}
	why := strings.Join(d.Reasons, "; ")
	if err != nil {
		why = err.Error()
	}
	return fmt.Errorf("policy %s: refusing the reload: the new policy would deactivate or take out of scope %d account(s) of target %q (%d deactivated, %d leaving scope), more than its mass-deprovision brake lets through in an hour (it refuses deprovisioning number %d: %s). Check them with `scimgate preview --policy %s`, then set force_reload in the policy block to reload anyway",
		g.Policy.Dir, im.Deprovisions, im.Target, im.Counts[provision.EffectDeactivated], im.Counts[provision.EffectLeavesScope], im.Deprovisions, why, g.Policy.Dir)
}

// brakeProbe is the deactivation of an app account after all the others the preview
// counted: the question the brake answers.
func brakeProbe(im *provision.Impact) *policy.Input {
	user := map[string]any{"schemas": []any{"urn:ietf:params:scim:schemas:core:2.0:User"}, "id": "scimgate-reload-probe", "userName": "scimgate-reload-probe", "active": true}
	after := map[string]any{"schemas": user["schemas"], "id": user["id"], "userName": user["userName"], "active": false}
	return &policy.Input{
		Action: "patch", ResourceType: "User", Events: []string{"deactivate"}, Client: "scimgate-preview",
		Target: im.Target, NativeID: "scimgate-reload-probe", Previous: user, Resource: after,
		Stats: policy.Stats{LastHour: map[string]int64{"deactivate": int64(im.Deprovisions - 1)}},
	}
}

// Interface guard
var _ caddy.AdminRouter = PreviewAdmin{}
