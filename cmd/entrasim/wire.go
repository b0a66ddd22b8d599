package main

import (
	"fmt"
	"net/url"
	"strings"
)

// The URIs Entra writes. They are spelled out here rather than imported from the gateway,
// so the simulator is an independent statement of the wire format (entra-wire.md §2).
const (
	userSchema       = "urn:ietf:params:scim:schemas:core:2.0:User"
	groupSchema      = "urn:ietf:params:scim:schemas:core:2.0:Group"
	adGroupSchema    = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
	enterpriseSchema = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	patchOpSchema    = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	managerPath      = enterpriseSchema + ":manager"
	departmentPath   = enterpriseSchema + ":department"
	employeeNumPath  = enterpriseSchema + ":employeeNumber"
	workEmailPath    = `emails[type eq "work"].value`
	scimContentType  = "application/scim+json; charset=utf-8"
	membersPerOp     = 10 // members in one membership PATCH op
)

// dialect is the PATCH dialect Entra speaks: the default, or the aadOptscim062020 feature
// flag's (entra-wire.md §3).
type dialect int

const (
	dialectDefault dialect = iota
	dialectFlag
)

func parseDialect(s string) (dialect, error) {
	switch s {
	case "default", "":
		return dialectDefault, nil
	case "aadOptscim062020":
		return dialectFlag, nil
	}
	return 0, fmt.Errorf("unknown dialect %q (want default or aadOptscim062020)", s)
}

func (d dialect) String() string {
	if d == dialectFlag {
		return "aadOptscim062020"
	}
	return "default"
}

// op spells a PATCH op name: capitalised by default, lower case with the flag.
func (d dialect) op(name string) string {
	if d == dialectFlag {
		return strings.ToLower(name)
	}
	return name
}

// boolean is how the dialect writes active: the strings "True"/"False" by default (the
// output of Entra's Switch expression), JSON booleans with the flag.
func (d dialect) boolean(b bool) any {
	if d == dialectFlag {
		return b
	}
	if b {
		return "True"
	}
	return "False"
}

// patchOp is one operation of a PatchOp body; Path is omitted for path-less ops.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path,omitempty"`
	Value any    `json:"value,omitempty"`
}

func patchBody(ops ...patchOp) map[string]any {
	return map[string]any{"schemas": []string{patchOpSchema}, "Operations": ops}
}

// filterQuery is the query string of a lookup, encoded as Entra does: spaces as "+",
// quotes as %22, excludedAttributes first for groups.
func filterQuery(attr, value string, excludeMembers bool) string {
	q := "filter=" + url.QueryEscape(attr+` eq "`+value+`"`)
	if excludeMembers {
		q = "excludedAttributes=members&" + q
	}
	return q
}

// userCreateBody is the Tutorial's create body (entra-wire.md §2.2): both schemas, meta,
// an empty roles array, active as a JSON boolean, and no manager (linked afterwards).
func userCreateBody(u *User) map[string]any {
	body := map[string]any{
		"schemas":  []string{userSchema, enterpriseSchema},
		"userName": u.UserName,
		"active":   u.IsActive(),
		"meta":     map[string]any{"resourceType": "User"},
		"roles":    []any{},
	}
	setIf(body, "externalId", u.ExternalID)
	setIf(body, "displayName", u.DisplayName)
	setIf(body, "title", u.Title)
	if u.Email != "" {
		body["emails"] = []any{map[string]any{"primary": true, "type": "work", "value": u.Email}}
	}
	if u.GivenName != "" || u.FamilyName != "" {
		name := map[string]any{"formatted": strings.TrimSpace(u.GivenName + " " + u.FamilyName)}
		setIf(name, "givenName", u.GivenName)
		setIf(name, "familyName", u.FamilyName)
		body["name"] = name
	}
	ext := map[string]any{}
	setIf(ext, "department", u.Department)
	setIf(ext, "employeeNumber", u.EmployeeNumber)
	if len(ext) > 0 {
		body[enterpriseSchema] = ext
	}
	return body
}

func setIf(m map[string]any, k, v string) {
	if v != "" {
		m[k] = v
	}
}

// groupCreateBody is the Tutorial's group create body, with the second (AD) schema URI
// and no members: Entra PATCHes them in afterwards.
func groupCreateBody(g *Group) map[string]any {
	body := map[string]any{
		"schemas":     []string{groupSchema, adGroupSchema},
		"displayName": g.DisplayName,
		"meta":        map[string]any{"resourceType": "Group"},
	}
	setIf(body, "externalId", g.ExternalID)
	return body
}

// attrChange is one attribute Entra found different on the target: its SCIM path, the
// new value, and whether the target had no value (Entra then sends Add, else Replace).
type attrChange struct {
	path    string
	value   any
	wasNone bool
}

// attrPatch writes attribute changes in the dialect. Default: one op per attribute, each
// with a path, Add or Replace. Flag: active and the filtered email path keep their own
// ops; every other attribute goes into one path-less replace whose keys are dotted
// (name.familyName) or full URNs, as entra-wire.md §3 shows.
func (d dialect) attrPatch(changes []attrChange) map[string]any {
	var ops []patchOp
	if d == dialectDefault {
		for _, c := range changes {
			name := "Replace"
			if c.wasNone {
				name = "Add"
			}
			ops = append(ops, patchOp{Op: name, Path: c.path, Value: c.value})
		}
		return patchBody(ops...)
	}
	bulk := map[string]any{}
	for _, c := range changes {
		if c.path == "active" || strings.Contains(c.path, "[") {
			ops = append(ops, patchOp{Op: "replace", Path: c.path, Value: c.value})
			continue
		}
		bulk[c.path] = c.value
	}
	if len(bulk) > 0 {
		ops = append(ops, patchOp{Op: "replace", Value: bulk})
	}
	return patchBody(ops...)
}

// activePatch disables or re-enables a user.
func (d dialect) activePatch(active bool) map[string]any {
	return patchBody(patchOp{Op: d.op("Replace"), Path: "active", Value: d.boolean(active)})
}

// managerPatch links a manager by id under the full extension path; Add when the target
// had none, Replace when it pointed elsewhere.
func (d dialect) managerPatch(managerID string, hadOne bool) map[string]any {
	name := "Add"
	if hadOne {
		name = "Replace"
	}
	return patchBody(patchOp{Op: d.op(name), Path: managerPath, Value: managerID})
}

// memberValues is a members value array, with the Tutorial's "$ref": null.
func memberValues(ids []string) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = map[string]any{"$ref": nil, "value": id}
	}
	return out
}

// addMembersPatch adds several members in one op (the gallery checklist's "multiple
// group memberships with a single PATCH").
func (d dialect) addMembersPatch(ids []string) map[string]any {
	return patchBody(patchOp{Op: d.op("Add"), Path: "members", Value: memberValues(ids)})
}

// removeMembersPatch removes members: by default a Remove with a value array (not
// RFC-compliant, but what Entra sends); with the flag one op per member with a filter.
func (d dialect) removeMembersPatch(ids []string) map[string]any {
	if d == dialectDefault {
		return patchBody(patchOp{Op: "Remove", Path: "members", Value: memberValues(ids)})
	}
	ops := make([]patchOp, len(ids))
	for i, id := range ids {
		ops[i] = patchOp{Op: "remove", Path: `members[value eq "` + id + `"]`}
	}
	return patchBody(ops...)
}
