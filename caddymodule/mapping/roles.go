package mapping

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// Groups as roles: in apps where access is a list of roles (or entitlements) on the user
// rather than groups with members, each group of the directory stands for one role the app
// already has. The groups section then has "roles" instead of events: where a group's role
// comes from (a table, or the groups lookup on the group's displayName), and the call that
// sets a user's roles, sent with every role of every group the user belongs to.

// assignCall names the call that sets a user's roles where calls are told apart by event.
const assignCall change.Event = "assign"

type fileRoles struct {
	Table             json.RawMessage `json:"table"`
	Key               string          `json:"key"`
	Assign            json.RawMessage `json:"assign"`
	RevokeOnDelete    *bool           `json:"revoke_on_delete"`
	ClearOnUserDelete bool            `json:"clear_on_user_delete"`
	Read              string          `json:"read"`
}

// Roles are the rules of a mapping whose groups are the app's existing roles
// (groups.roles). Nil on a mapping whose groups are native groups.
type Roles struct {
	rule   string
	table  map[string]string // key -> role id ("": maps to no role); nil: the groups lookup finds roles
	tname  string            // the table's name in "tables", "" for an inline one
	key    *template         // the table's key, rendered from the group
	assign *call
	// RevokeOnDelete: a deleted group's members lose its role (their lists are sent
	// without it). Default true; false for apps that take care of it themselves.
	RevokeOnDelete bool
	// ClearOnUserDelete: a user's delete first sends the user's roles as an empty list, in
	// the same flow, for apps that refuse to delete (or keep the grants of) a user with roles.
	ClearOnUserDelete bool
	read              string // where a listed user holds its role ids; "" when not given
}

// Roles returns the mapping's role rules, nil when its groups are not roles.
func (m *Mapping) Roles() *Roles {
	if rm := m.types[scim.GroupType]; rm != nil {
		return rm.roles
	}
	return nil
}

// ByLookup reports whether roles are found by the groups lookup (a call on the app) rather
// than a table.
func (r *Roles) ByLookup() bool { return r.table == nil }

// Source says where roles come from, for the journal: the table or the lookup.
func (r *Roles) Source() string {
	switch {
	case r.table == nil:
		return "the groups lookup"
	case r.tname != "":
		return fmt.Sprintf("table %q", r.tname)
	}
	return "the roles table"
}

// FromTable returns the role the group stands for by the table ("" when the table maps its
// key to nothing).
func (r *Roles) FromTable(group scim.Resource) (string, error) {
	in := &Input{ResourceType: scim.GroupType, Resource: group}
	key, ok, err := r.key.renderText(&evalCtx{in: in, doc: group})
	if err != nil {
		return "", fmt.Errorf("%s.key: %w", r.rule, err)
	}
	if !ok {
		return "", nil
	}
	return r.table[key], nil
}

// AssignRequest builds the call that sets a user's roles: in is the user (Resource, its
// NativeID) and RoleIDs every role it has, sorted by the caller.
func (r *Roles) AssignRequest(in Input) (Request, error) {
	in.ResourceType, in.Event = scim.UserType, assignCall
	if in.RoleIDs == nil {
		in.RoleIDs = []string{} // an empty list, never null
	}
	req, _, err := r.assign.build(&evalCtx{in: &in, doc: in.Resource}, nil)
	return req, err
}

// compileRoles compiles groups.roles; headers are the groups section's.
func (c *compiler) compileRoles(rule string, raw json.RawMessage, headers http.Header) (*Roles, error) {
	var fr fileRoles
	if err := decodeStrict(raw, &fr); err != nil {
		return nil, c.wrap(rule, err)
	}
	r := &Roles{rule: rule, RevokeOnDelete: fr.RevokeOnDelete == nil || *fr.RevokeOnDelete, ClearOnUserDelete: fr.ClearOnUserDelete, read: fr.Read}
	if fr.Read != "" {
		if err := compileGJSONPath(fr.Read); err != nil {
			return nil, c.errf(rule+".read", "%v", err)
		}
	}
	if !isNull(fr.Table) {
		if err := c.compileRoleTable(r, rule+".table", fr.Table); err != nil {
			return nil, err
		}
		key := fr.Key
		if key == "" {
			key = "{displayName}"
		}
		var err error
		if r.key, err = compileTemplate(scim.GroupType, key, false, c.tables); err != nil {
			return nil, c.wrap(rule+".key", err)
		}
	} else if fr.Key != "" {
		return nil, c.errf(rule+".key", "the key of a table: roles found by the groups lookup are looked up by its path ({displayName} there)")
	}
	if isNull(fr.Assign) {
		return nil, c.errf(rule+".assign", "missing: the call that sets a user's roles, e.g. {\"method\": \"PUT\", \"path\": \"/users/{id}/roles\", \"body\": {\"roles\": \"$role_ids\"}}")
	}
	if bytes.HasPrefix(bytes.TrimSpace(fr.Assign), []byte("[")) {
		return nil, c.errf(rule+".assign", "one call: it sends the user's whole list of roles")
	}
	cl, err := c.compileCall(scim.UserType, assignCall, rule+".assign", fr.Assign, headers)
	if err != nil {
		return nil, err
	}
	if cl.when != nil {
		return nil, c.errf(rule+".assign.when", "the call is made whenever a user's roles change: it takes no condition")
	}
	uses := false
	for _, f := range cl.fields {
		uses = uses || f.uses(srcRoleIDs)
	}
	if !uses {
		return nil, c.errf(rule+".assign", "has no source for the roles: give it a body field with \"from\": \"$role_ids\" (the user's roles, every one)")
	}
	r.assign = cl
	return r, nil
}

// compileRoleTable reads the table: a name from "tables" or an inline object, from keys to
// role ids (strings or integers; null: the key maps to no role).
func (c *compiler) compileRoleTable(r *Roles, rule string, raw json.RawMessage) error {
	var entries map[string]any
	var name string
	if json.Unmarshal(raw, &name) == nil {
		tbl, ok := c.tables[name]
		if !ok {
			return c.errf(rule, "no table %q in \"tables\" (tables: %s)", name, strings.Join(sortedKeys(c.tables), ", "))
		}
		entries, r.tname = tbl, name
	} else if err := decodeStrict(raw, &entries); err != nil || entries == nil {
		return c.errf(rule, "a table is the name of one in \"tables\" or an object from group names to role ids")
	}
	r.table = make(map[string]string, len(entries))
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		id, err := roleText(entries[k])
		if err != nil {
			return c.errf(fmt.Sprintf("%s[%q]", rule, k), "%v", err)
		}
		r.table[k] = id
	}
	return nil
}

// roleText is a table's role id as text: a string, an integer, or null for no role.
func roleText(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		if strings.TrimSpace(v) == "" {
			return "", fmt.Errorf("an empty role id; write null for a group that gives no role")
		}
		return v, nil
	case json.Number:
		return integerText(v.String())
	case float64:
		return integerText(fmt.Sprint(v))
	}
	return "", fmt.Errorf("a role id is a string or an integer (or null for no role), not %T", v)
}

// checkRoles checks what the roles of groups need from the rest of the file: a place to find
// roles (a table or the groups lookup, not both), no group events (groups that are roles
// are found, not created, and their members are sent as users' roles), and users whose
// native ids the gateway learns (the assign call names a user by it).
func (c *compiler) checkRoles(m *Mapping) error {
	gm := m.types[scim.GroupType]
	if gm == nil || gm.roles == nil {
		return nil
	}
	r := gm.roles
	for _, ev := range eventsOf[scim.GroupType] {
		if len(gm.calls[ev]) > 0 {
			return c.errf("groups.events."+string(ev), "groups that are roles (groups.roles) have no calls of their own: roles are found, not created, and members are sent as users' roles by groups.roles.assign; remove groups.events or groups.roles")
		}
	}
	switch {
	case r.table != nil && gm.lookup != nil:
		return c.errf(r.rule+".table", "roles come from one place: a table or the groups lookup, not both; remove one")
	case r.table == nil && gm.lookup == nil:
		return c.errf(r.rule, "says nowhere where a group's role comes from: give a \"table\" (group names to role ids) or a groups \"lookup\" (a GET by {displayName} whose \"id\" is the role's id)")
	case m.types[scim.UserType] == nil:
		return c.errf(r.rule+".assign", "sets users' roles, but the mapping has no \"users\"")
	case !m.knowsNativeIDs(scim.UserType):
		return c.errf(r.rule+".assign", "names users by native id ({id}), but users have no create \"id\" or lookup to learn it from")
	case r.read != "" && !m.CanList(scim.UserType):
		return c.errf(r.rule+".read", "says where a listed user holds its roles, but users have no \"list\" call: a reconcile reads the roles from it")
	}
	return nil
}

// CanRead reports whether a reconcile can read users' roles from the users list
// (groups.roles.read).
func (r *Roles) CanRead() bool { return r.read != "" }

// RolesIn returns the role ids a listed user (item, as users.list gives it) holds, as
// text (numbers as their decimal text, as role ids are sent), sorted, each once. Absent or
// null is no role, like an empty list; anything else that is not a list of ids is an error
// naming the path.
func (r *Roles) RolesIn(item []byte) ([]string, error) {
	v := gjson.GetBytes(item, r.read)
	if !v.Exists() || v.Type == gjson.Null {
		return []string{}, nil
	}
	if !v.IsArray() {
		return nil, fmt.Errorf("the user's roles at %q are not a list: %s", r.read, clip(v.Raw))
	}
	out := []string{}
	var bad error
	v.ForEach(func(_, e gjson.Result) bool {
		switch {
		case e.Type == gjson.String && e.Str != "":
			out = append(out, e.Str)
		case e.Type == gjson.Number:
			id, err := integerText(e.Raw)
			if err != nil {
				bad = fmt.Errorf("a role id at %q: %v", r.read, err)
				return false
			}
			out = append(out, id)
		default:
			bad = fmt.Errorf("a role id at %q is not a string or an integer: %s", r.read, clip(e.Raw))
			return false
		}
		return true
	})
	if bad != nil {
		return nil, bad
	}
	sort.Strings(out)
	return slices.Compact(out), nil
}

// clip shortens an answer's text for an error.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
