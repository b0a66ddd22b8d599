package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// PolicyConfig points the gateway at its Open Policy Agent policies: every write request
// is decided by data.scimgate.decision (see the README's "Policies" section and
// policies/README.md) before anything reaches the directory's target.
type PolicyConfig struct {
	// Dir holds the Rego policies: every *.rego file below it except *_test.rego, plus
	// data files named data.json or data.yaml, mounted at their directory's path.
	// Placeholders are resolved.
	Dir string `json:"dir"`
	// Data lists further JSON or YAML data files, each an object merged at the data root.
	Data []string `json:"data,omitempty"`
	// Query is the decision's path. Default: data.scimgate.decision.
	Query string `json:"query,omitempty"`
	// Timeout bounds one decision; a decision that takes longer denies. Default: 100ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// maxDenyDetail bounds the reasons a 403 carries (Entra shows them in its provisioning
// logs; a policy could produce thousands).
const maxDenyDetail = 2000

// provision loads and compiles the policies. A policy that does not compile fails the
// (re)load, so the previous configuration stays in force.
func (c *PolicyConfig) provision(repl *caddy.Replacer, logger *zap.Logger) (*policy.Engine, error) {
	dir := repl.ReplaceAll(c.Dir, "")
	if dir == "" {
		return nil, errors.New("policy: dir is required (the directory of the Rego policies)")
	}
	data := make([]string, 0, len(c.Data))
	for _, f := range c.Data {
		if f = repl.ReplaceAll(f, ""); f == "" {
			return nil, fmt.Errorf("policy %s: a data file resolves to an empty path", dir)
		}
		data = append(data, f)
	}
	if c.Timeout < 0 {
		return nil, fmt.Errorf("policy %s: timeout must be positive", dir)
	}
	eng, err := policy.Load(policy.Options{
		Dir:       dir,
		DataFiles: data,
		Query:     c.Query,
		Timeout:   time.Duration(c.Timeout),
		Print: func(location, msg string) {
			logger.Debug("policy print", zap.String("location", location), zap.String("message", msg))
		},
	})
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", dir, err)
	}
	return eng, nil
}

// policyDenied is a change the policy refused: answered 403 with its reasons and journaled
// as denied, with nothing sent to the app and nothing changed in the directory.
type policyDenied struct {
	decision policy.Decision
}

func (e *policyDenied) Error() string { return "denied by policy: " + e.detail() }

// detail is the 403's detail: the reasons, bounded.
func (e *policyDenied) detail() string {
	reasons := e.decision.Reasons
	if len(reasons) == 0 {
		reasons = []string{"the policy refused this change without giving a reason"}
	}
	s := strings.Join(reasons, "; ")
	if len(s) > maxDenyDetail {
		s = strings.ToValidUTF8(s[:maxDenyDetail], "") + "…"
	}
	return s
}

// scimError is the answer Entra gets. 403 carries no scimType (RFC 7644 defines none for
// it); the reasons show in Entra's provisioning logs.
func (e *policyDenied) scimError() *scim.Error {
	return scim.Errorf(http.StatusForbidden, "", "denied by policy: %s", e.detail())
}

// verdict is the policy's decision on one change and what it means for the app.
type verdict struct {
	decision policy.Decision
	// release takes back the change's count in the policy's stats; called when the change
	// does not reach the app after all (skipped, failed).
	release func()
}

// decidePolicy evaluates the policy on plan p. Without a policy every change is allowed.
// A policy that cannot decide (undefined, error, timeout, wrong type) denies, and the
// failure is logged without the request's payload.
func (g *Gateway) decidePolicy(req *request, p *plan, members policy.Members) verdict {
	if g.policy == nil {
		return verdict{decision: policy.Decision{Allow: true}, release: func() {}}
	}
	in := &policy.Input{
		Action:       req.audit.action,
		ResourceType: p.typ,
		Events:       p.events,
		Client:       req.client,
		Target:       g.targetName(),
		NativeID:     p.nativeID,
		Resource:     scim.Canonical(p.typ, p.after),
		Previous:     scim.Canonical(p.typ, p.before),
		Changed:      changedAttrPaths(req.audit.changes),
		Members:      members,
	}
	lastHour, release := g.stats.reserve(p.events)
	in.Stats = policy.Stats{LastHour: lastHour}
	d, err := g.policy.Decide(req.r.Context(), in)
	if err != nil {
		g.logger.Warn("policy could not decide; the change is denied (fail closed)",
			zap.String("request_id", req.id), zap.String("resource_type", p.typ), zap.String("scim_id", p.id), zap.Error(err))
	}
	g.metrics.policyDecision(d, err)
	if !d.Allow || d.Skip {
		release()
	}
	return verdict{decision: d, release: release}
}

// journalDecision is what the journal records of a decision.
func journalDecision(d policy.Decision, droppedAttrs, droppedMembers []string) *journal.Decision {
	return &journal.Decision{
		Allow:             d.Allow,
		Skip:              d.Allow && d.Skip,
		Reasons:           d.Reasons,
		DroppedAttributes: droppedAttrs,
		DroppedMembers:    droppedMembers,
	}
}

// changedAttrPaths lists the attribute paths a change touches, as the policy sees them:
// name.givenName, urn:...:User:department, members.
func changedAttrPaths(changes []journal.Change) []string {
	out := make([]string, 0, len(changes))
	for _, c := range changes {
		if !slices.Contains(out, c.Path) {
			out = append(out, c.Path)
		}
	}
	return out
}

// memberRefs describes member ids for the policy: type and display name (a user's
// userName, a group's displayName). An id that names no resource keeps an empty type.
func memberRefs(tx *store.Tx, ids []string) []policy.Member {
	out := make([]policy.Member, 0, len(ids))
	for _, id := range ids {
		m := policy.Member{ID: id}
		if typ, err := tx.TypeOf(id); err == nil {
			m.Type = typ
			if rec, err := tx.Get(typ, id); err == nil {
				m.Display = displayOf(rec)
			}
		}
		out = append(out, m)
	}
	return out
}

// displayOf reads a record's userName (users) or displayName (groups) from its index
// entries, without decoding the document.
func displayOf(rec *store.Record) string {
	want := "userName"
	if rec.Type == scim.GroupType {
		want = "displayName"
	}
	for _, e := range rec.Index {
		if e.Attr == want {
			return e.Value
		}
	}
	return ""
}

// shapeForApp applies an allow decision's obligations to what the app receives: dropped
// attributes are removed from the resource the mapping sees, dropped members from the
// member calls, and a deactivate obligation replaces the change with a deactivation. The
// directory is not affected: it keeps what Entra wrote. It returns the plan for the app and
// the attributes and members actually dropped (for the journal).
func shapeForApp(p *plan, d policy.Decision) (*plan, []string, []string, error) {
	np := *p
	var droppedAttrs, droppedMembers []string
	if len(d.DropAttributes) > 0 {
		after, dropped, err := scim.DropAttributes(p.typ, p.after, d.DropAttributes)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("the policy's drop_attributes: %w", err)
		}
		before, _, err := scim.DropAttributes(p.typ, p.before, d.DropAttributes)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("the policy's drop_attributes: %w", err)
		}
		np.after, np.before, droppedAttrs = after, before, dropped
		if np.before != nil && np.after != nil && slices.Contains(np.events, "update") && !attributesDiffer(np.before, np.after) {
			// Only dropped attributes changed: the app has nothing to update.
			np.events = slices.DeleteFunc(slices.Clone(np.events), func(e string) bool { return e == "update" })
		}
		np.changed = slices.DeleteFunc(slices.Clone(np.changed), func(c string) bool {
			return slices.ContainsFunc(dropped, func(d string) bool { return strings.EqualFold(c, d) })
		})
	}
	if len(d.DropMembers) > 0 {
		keep := func(ids []string) []string {
			return slices.DeleteFunc(slices.Clone(ids), func(id string) bool {
				if slices.Contains(d.DropMembers, id) {
					droppedMembers = append(droppedMembers, id)
					return true
				}
				return false
			})
		}
		np.added, np.removed = keep(p.added), keep(p.removed)
		np.events = slices.DeleteFunc(slices.Clone(np.events), func(e string) bool {
			return (e == "add_members" && len(np.added) == 0) || (e == "remove_members" && len(np.removed) == 0)
		})
	}
	if d.Deactivate && p.typ == scim.UserType && p.after != nil {
		after := scim.CloneResource(np.after)
		scim.Set(after, "active", false)
		np.after = after
		np.events = []string{"deactivate"}
	}
	return &np, droppedAttrs, droppedMembers, nil
}

// attributesDiffer reports whether two documents differ in anything but members.
func attributesDiffer(before, after scim.Resource) bool {
	for _, c := range diffChanges(before, after) {
		if c.Path != "members" {
			return true
		}
	}
	return false
}

// targetName is the name of the gateway's target, "" without one.
func (g *Gateway) targetName() string {
	if g.target == nil {
		return ""
	}
	return g.target.name
}

// policyHash identifies the policy in force in logs ("" without one).
func (g *Gateway) policyHash() string {
	if g.policy == nil {
		return ""
	}
	return g.policy.Hash()
}
