package caddymodule

// The discovery documents checked against RFC 7643 as a client reads them: every schema
// the gateway serves at /Schemas (and each at /Schemas/{urn}), every attribute definition
// in it, against the rules of RFC 7643 §7 (and §2.1, §2.3.8 for names and nesting).

import (
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/scim"
)

// rfc7643AttrKeys are the characteristics RFC 7643 §7 defines for an attribute.
var rfc7643AttrKeys = []string{
	"name", "type", "multiValued", "description", "required", "canonicalValues", "caseExact",
	"mutability", "returned", "uniqueness", "referenceTypes", "subAttributes",
}

// rfc7643AttrName is ATTRNAME of RFC 7643 §2.1: ALPHA *(nameChar), nameChar = "-" / "_" /
// DIGIT / ALPHA. "$ref" is the one name outside it (§2.4), for reference sub-attributes.
var rfc7643AttrName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*$`)

// schemaChecker collects every way a served schema departs from RFC 7643.
type schemaChecker struct {
	resourceTypes []string // names served at /ResourceTypes: what referenceTypes may name
	problems      []string
}

func (c *schemaChecker) problem(path, format string, args ...any) {
	c.problems = append(c.problems, path+": "+fmt.Sprintf(format, args...))
}

func (c *schemaChecker) oneOf(path string, attr map[string]any, key string, allowed ...string) {
	s, ok := attr[key].(string)
	if !ok {
		c.problem(path, "%s is %#v, want a string", key, attr[key])
		return
	}
	if !slices.Contains(allowed, s) {
		c.problem(path, "%s %q is not one of %v", key, s, allowed)
	}
}

func (c *schemaChecker) boolean(path string, attr map[string]any, key string) {
	if _, ok := attr[key].(bool); !ok {
		c.problem(path, "%s is %#v, want true or false", key, attr[key])
	}
}

func (c *schemaChecker) strings(path string, attr map[string]any, key string) []string {
	raw, ok := attr[key].([]any)
	if !ok || len(raw) == 0 {
		c.problem(path, "%s is %#v, want a non-empty array of strings", key, attr[key])
		return nil
	}
	out := make([]string, 0, len(raw))
	for _, e := range raw {
		s, ok := e.(string)
		if !ok || s == "" {
			c.problem(path, "%s holds %#v, want non-empty strings", key, e)
			continue
		}
		out = append(out, s)
	}
	return out
}

// attributes checks a list of attribute definitions (sub says whether they are the
// sub-attributes of a complex attribute).
func (c *schemaChecker) attributes(path string, raw any, sub bool) {
	list, ok := raw.([]any)
	if !ok || len(list) == 0 {
		c.problem(path, "want a non-empty array of attribute definitions, got %#v", raw)
		return
	}
	seen := map[string]bool{}
	for i, e := range list {
		attr, ok := e.(map[string]any)
		if !ok {
			c.problem(fmt.Sprintf("%s[%d]", path, i), "not an object: %#v", e)
			continue
		}
		name, _ := attr["name"].(string)
		if seen[strings.ToLower(name)] {
			c.problem(path, "two attributes are called %q (names are case-insensitive)", name)
		}
		seen[strings.ToLower(name)] = true
		c.attribute(path+"."+name, attr, sub)
	}
}

func (c *schemaChecker) attribute(path string, attr map[string]any, sub bool) {
	for k := range attr {
		if !slices.Contains(rfc7643AttrKeys, k) {
			c.problem(path, "%q is not an attribute characteristic of RFC 7643 §7", k)
		}
	}
	name, _ := attr["name"].(string)
	typ, _ := attr["type"].(string)
	switch {
	case name == "$ref":
		if !sub || typ != "reference" {
			c.problem(path, `"$ref" names only a reference sub-attribute`)
		}
	case !rfc7643AttrName.MatchString(name):
		c.problem(path, "name %q is not an ATTRNAME (RFC 7643 §2.1)", name)
	}
	c.oneOf(path, attr, "type", "string", "boolean", "decimal", "integer", "dateTime", "binary", "reference", "complex")
	c.boolean(path, attr, "multiValued")
	c.boolean(path, attr, "required")
	c.boolean(path, attr, "caseExact")
	if d, ok := attr["description"].(string); !ok || strings.TrimSpace(d) == "" {
		c.problem(path, "description is %#v, want a non-empty string", attr["description"])
	}
	c.oneOf(path, attr, "mutability", scim.ReadOnly, scim.ReadWrite, scim.Immutable, scim.WriteOnly)
	c.oneOf(path, attr, "returned", "always", "never", "default", "request")
	c.oneOf(path, attr, "uniqueness", "none", "server", "global")
	if attr["mutability"] == scim.WriteOnly && attr["returned"] != "never" {
		c.problem(path, "a writeOnly attribute is never returned (RFC 7643 §7), but returned is %v", attr["returned"])
	}
	if _, has := attr["canonicalValues"]; has {
		c.strings(path, attr, "canonicalValues")
	}
	_, hasRefTypes := attr["referenceTypes"]
	switch {
	case typ == "reference":
		for _, rt := range c.strings(path, attr, "referenceTypes") {
			if rt != "external" && rt != "uri" && !slices.Contains(c.resourceTypes, rt) {
				c.problem(path, "referenceTypes names %q: neither a resource type served at /ResourceTypes (%v) nor external or uri", rt, c.resourceTypes)
			}
		}
	case hasRefTypes:
		c.problem(path, "referenceTypes on an attribute of type %s (only for reference)", typ)
	}
	subs, hasSubs := attr["subAttributes"]
	switch {
	case typ == "complex" && sub:
		c.problem(path, "a sub-attribute cannot be complex (RFC 7643 §2.3.8)")
	case typ == "complex":
		c.attributes(path, subs, true)
	case hasSubs:
		c.problem(path, "subAttributes on an attribute of type %s (only for complex)", typ)
	}
}

// schema checks one schema resource as served.
func (c *schemaChecker) schema(base string, s map[string]any) {
	id, _ := s["id"].(string)
	path := id
	if !strings.HasPrefix(id, "urn:") {
		c.problem(path, "id %q is not a URN", id)
	}
	if !reflect.DeepEqual(s["schemas"], []any{scim.SchemaSchema}) {
		c.problem(path, "schemas is %v, want [%s]", s["schemas"], scim.SchemaSchema)
	}
	if n, ok := s["name"].(string); !ok || n == "" {
		c.problem(path, "name is %#v, want a non-empty string", s["name"])
	}
	if d, ok := s["description"].(string); !ok || d == "" {
		c.problem(path, "description is %#v, want a non-empty string", s["description"])
	}
	meta, _ := s["meta"].(map[string]any)
	if meta["resourceType"] != "Schema" || meta["location"] != base+"/Schemas/"+id {
		c.problem(path, "meta is %v, want resourceType Schema and location %s/Schemas/%s", meta, base, id)
	}
	c.attributes(path, s["attributes"], false)
}

func TestSchemasConformToRFC7643(t *testing.T) {
	g := newTestGateway(t, nil)
	base := "http://scim.test" + itBase
	c := &schemaChecker{}
	served := map[string]bool{}
	for _, rt := range itListResources(t, itWantOK(t, serve(t, g, http.MethodGet, itBase+"/ResourceTypes", nil), http.StatusOK)) {
		name, _ := rt["name"].(string)
		c.resourceTypes = append(c.resourceTypes, name)
		if s, _ := rt["schema"].(string); s != "" {
			served[s] = false
		}
		exts, _ := rt["schemaExtensions"].([]any)
		for _, e := range exts {
			if s, _ := e.(map[string]any)["schema"].(string); s != "" {
				served[s] = false
			}
		}
	}
	list := itListResources(t, itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Schemas", nil), http.StatusOK))
	if len(list) == 0 {
		t.Fatal("/Schemas serves no schema")
	}
	for _, s := range list {
		id, _ := s["id"].(string)
		c.schema(base, s)
		one := itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Schemas/"+id, nil), http.StatusOK)
		if !reflect.DeepEqual(one, s) {
			t.Errorf("/Schemas/%s differs from its entry in /Schemas", id)
		}
		if _, ok := served[id]; ok {
			served[id] = true
		}
	}
	for urn, found := range served {
		if !found {
			c.problem(urn, "named by /ResourceTypes but not served at /Schemas")
		}
	}
	sort.Strings(c.problems)
	for _, p := range c.problems {
		t.Error(p)
	}
}

// TestSchemaCheckerCatchesViolations: the checker above finds what it is meant to find,
// so that a clean run of TestSchemasConformToRFC7643 means something.
func TestSchemaCheckerCatchesViolations(t *testing.T) {
	valid := func() map[string]any {
		return map[string]any{
			"name": "photo", "type": "reference", "multiValued": false, "description": "d", "required": false,
			"caseExact": false, "mutability": "readWrite", "returned": "default", "uniqueness": "none",
			"referenceTypes": []any{"external"},
		}
	}
	cases := []struct {
		name   string
		change func(a map[string]any)
		want   string
	}{
		{"valid", func(map[string]any) {}, ""},
		{"reference without referenceTypes", func(a map[string]any) { delete(a, "referenceTypes") }, "referenceTypes"},
		{"unknown reference type", func(a map[string]any) { a["referenceTypes"] = []any{"Device"} }, `"Device"`},
		{"referenceTypes on a string", func(a map[string]any) { a["type"] = "string" }, "only for reference"},
		{"bad mutability", func(a map[string]any) { a["mutability"] = "readwrite" }, "mutability"},
		{"bad returned", func(a map[string]any) { a["returned"] = "sometimes" }, "returned"},
		{"bad uniqueness", func(a map[string]any) { a["uniqueness"] = "unique" }, "uniqueness"},
		{"bad type", func(a map[string]any) { a["type"] = "url" }, "type"},
		{"missing multiValued", func(a map[string]any) { delete(a, "multiValued") }, "multiValued"},
		{"missing description", func(a map[string]any) { delete(a, "description") }, "description"},
		{"unknown characteristic", func(a map[string]any) { a["nullable"] = true }, "nullable"},
		{"bad name", func(a map[string]any) { a["name"] = "1st" }, "ATTRNAME"},
		{"writeOnly returned", func(a map[string]any) { a["mutability"] = "writeOnly" }, "writeOnly"},
		{"complex without subAttributes", func(a map[string]any) { a["type"] = "complex"; delete(a, "referenceTypes") }, "non-empty array"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := valid()
			tc.change(a)
			c := &schemaChecker{resourceTypes: []string{"User", "Group"}}
			c.attribute("x", a, false)
			got := strings.Join(c.problems, "\n")
			switch {
			case tc.want == "" && got != "":
				t.Errorf("problems in a valid definition: %s", got)
			case tc.want != "" && !strings.Contains(got, tc.want):
				t.Errorf("problems %q, want one mentioning %q", got, tc.want)
			}
		})
	}
	t.Run("complex sub-attribute", func(t *testing.T) {
		c := &schemaChecker{}
		c.attribute("x", map[string]any{"name": "n", "type": "complex", "subAttributes": []any{}}, true)
		if !strings.Contains(strings.Join(c.problems, "\n"), "§2.3.8") {
			t.Errorf("problems %v, want the nesting rule", c.problems)
		}
	})
}
