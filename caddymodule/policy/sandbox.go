package policy

import (
	"maps"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// disabledBuiltins may not be called by scimgate policies; each maps to why, and what to
// do instead (the load error's fix says it). A decision must depend only on its input and
// the loaded data, so that it is fast, reproducible from the journal and cannot leak what
// the process holds. opa.runtime returns the environment variables, which hold the
// gateway's secrets. The JSON schema builtins resolve a schema's $ref, reading a file://
// one from the gateway's disk and fetching an http one, and what they find shows in their
// result (a validation error quotes an enum): a policy could read a secret file,
// /proc/self/environ or an internal URL into a 403 that Entra shows. strings.render_template
// executes a Go template, which OPA cannot stop: the timeout does not bound it. Every
// builtin OPA marks nondeterministic has been reviewed (TestNondeterministicBuiltinsReviewed),
// so that one a new OPA version adds is not callable before someone decides.
var disabledBuiltins = map[string]string{
	"http.send":               "it makes network requests; put the values the policy needs in a data.json next to the policies",
	"net.lookup_ip_addr":      "it makes DNS requests; put the addresses in a data.json next to the policies (net.cidr_contains matches them)",
	"opa.runtime":             "it returns the process environment, which holds the gateway's secrets; put the values the policy needs in a data.json next to the policies",
	"json.match_schema":       "a schema's $ref makes it read files on the gateway's disk and fetch URLs; check the fields with rules (is_string, regex.match, ...)",
	"json.verify_schema":      "a schema's $ref makes it read files on the gateway's disk and fetch URLs; check the fields with rules (is_string, regex.match, ...)",
	"strings.render_template": "a Go template runs outside the decision's timeout ({{range 100000000}} held a core for 30 s and built gigabytes for a 100 ms decision); build strings with sprintf or concat",
}

// capabilities is OPA's builtin set without disabledBuiltins, and no host that remote
// references may reach (OPA's allow_net: nil allows every host). A policy calling a
// disabled builtin fails to compile ("undefined function"), so the mistake shows at load
// time, not per request.
var capabilities = func() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion(ast.CapabilitiesRegoVersion(ast.RegoV1))
	c.Builtins = slices.DeleteFunc(c.Builtins, func(b *ast.Builtin) bool {
		_, off := disabledBuiltins[b.Name]
		return off
	})
	c.AllowNet = []string{}
	return c
}()

// checkSchemaRefs refuses a schema annotation (`# METADATA` `schemas:`, read by the type
// checker when the policy loads) whose "$ref" or "$id" names anything but a place within
// the schema itself ("#/definitions/name"): OPA would resolve a file:// one by reading the
// gateway's disk at every load, and a relative one against it. (allow_net already stops
// the URLs.) The error names the file and row of the annotation and the reference.
func checkSchemaRefs(modules map[string]*ast.Module) error {
	var errs ast.Errors
	for _, name := range slices.Sorted(maps.Keys(modules)) {
		for _, a := range modules[name].Annotations {
			for _, s := range a.Schemas {
				if s.Definition == nil {
					continue
				}
				if ref, ok := outsideRef(*s.Definition); ok {
					errs = append(errs, ast.NewError(ast.TypeErr, a.Location,
						"the schema of %s refers to %q, outside the annotation: a schema annotation may only refer within the schema (\"$ref\": \"#/definitions/name\"), as scimgate reads no file or URL for a policy; write the schema out in the annotation", s.Path, ref))
				}
			}
		}
	}
	if len(errs) > 0 {
		return explain(errs)
	}
	return nil
}

// outsideRef finds, in a schema decoded from YAML or JSON, a "$ref" or "$id" string that
// does not start with "#", and returns it.
func outsideRef(v any) (string, bool) {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			if s, ok := x[k].(string); ok && (k == "$ref" || k == "$id") && !strings.HasPrefix(s, "#") {
				return s, true
			}
			if ref, ok := outsideRef(x[k]); ok {
				return ref, true
			}
		}
	case []any:
		for _, e := range x {
			if ref, ok := outsideRef(e); ok {
				return ref, true
			}
		}
	}
	return "", false
}
