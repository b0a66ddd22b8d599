package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

type sendMode int

const (
	sendAll sendMode = iota
	sendChanged
)

type memberMode int

const (
	membersNone memberMode = iota
	membersEach
	membersBatch
)

// call is one compiled native call: an event's, or a resource type's lookup.
type call struct {
	rule   string
	rt     string // the resource type
	event  change.Event
	method string
	path   *template
	header http.Header
	// headerFields are the headers whose value each request computes (an If-Match from
	// an earlier answer's ETag), set over header.
	headerFields []*headerField
	fields       []*field
	send         sendMode
	idPath       string        // the body path of id, when the id is in the body
	id           IDSource      // where the answer gives the native id (create and lookup)
	form         *formEncoding // nil: a JSON body
	members      memberMode
	batchSize    int
	memberTypes  []string
	idempotent   bool
	items        string         // lookup and list: the gjson path of the page's items
	match        []matchRule    // lookup with items: the fields the account's item holds
	paging       *legacy.Paging // lookup and list: how to follow pages; nil: one page
	// read (list): where a listed item holds a field the calls write at another path, by
	// the field's native path as written; the gjson path in the item (see itemPath)
	read   map[string]string
	expect *legacy.Expect
	when   *condition // nil: always
}

// field is one compiled body member: a value from a source (or a constant), through the
// transforms, set at the native path.
type field struct {
	rule       string
	native     string
	sjsonPath  string
	comps      []string
	src        *source
	value      any
	hasValue   bool
	transforms []*transform
	required   bool
	deps       []string // canonical SCIM paths the value depends on, for send: changed
}

var allowedMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

func (c *compiler) compileCall(rt string, event change.Event, rule string, raw json.RawMessage, headers http.Header) (*call, error) {
	var fc fileCall
	if err := decodeStrict(raw, &fc); err != nil {
		return nil, c.wrap(rule, err)
	}
	cl := &call{rule: rule, event: event, rt: rt}
	if err := c.compileMethod(cl, fc.Method); err != nil {
		return nil, err
	}
	if fc.Path == "" {
		return nil, c.errf(rule+".path", "missing: every call needs a URL path template")
	}
	var err error
	if cl.path, err = compileTemplate(rt, fc.Path, true, c.tables); err != nil {
		return nil, c.wrap(rule+".path", err)
	}
	if err := c.compileCallHeaders(rt, cl, headers, fc.Headers); err != nil {
		return nil, err
	}
	if fc.Body != nil {
		if cl.fields, err = c.compileBody(rt, rule+".body", fc.Body); err != nil {
			return nil, err
		}
	}
	if err := c.compileOptions(cl, &fc); err != nil {
		return nil, err
	}
	if err := c.checkGatewayValues(cl); err != nil {
		return nil, err
	}
	if cl.when, err = c.compileWhen(rt, rule+".when", fc.When); err != nil {
		return nil, err
	}
	// A create's answer must carry the new id; a lookup that finds nothing is an answer too.
	idInAnswer := cl.idPath
	if cl.event == lookupCall || isList(cl.event) {
		idInAnswer = ""
	}
	if cl.expect, err = c.compileExpect(rule+".expect", c.expect, fc.Expect, idInAnswer); err != nil {
		return nil, err
	}
	return cl, nil
}

func (c *compiler) compileMethod(cl *call, method string) error {
	if method == "" {
		return c.errf(cl.rule+".method", "missing: write one of %s", strings.Join(allowedMethods, ", "))
	}
	cl.method = strings.ToUpper(method)
	ok := false
	for _, m := range allowedMethods {
		ok = ok || m == cl.method
	}
	if !ok {
		return c.errf(cl.rule+".method", "unsupported method %q; use one of %s", method, strings.Join(allowedMethods, ", "))
	}
	if (cl.event == lookupCall || isList(cl.event)) && cl.method != http.MethodGet {
		return c.errf(cl.rule+".method", "a %s reads: its method is GET, not %s", cl.event, cl.method)
	}
	// RFC 9110 §9.2.2; a POST or PATCH can be declared idempotent when the app treats it so.
	cl.idempotent = cl.method == http.MethodGet || cl.method == http.MethodPut || cl.method == http.MethodDelete
	return nil
}

// compileOptions checks the options that only make sense for some events.
func (c *compiler) compileOptions(cl *call, fc *fileCall) error {
	if fc.Idempotent != nil {
		cl.idempotent = *fc.Idempotent
	}
	isMember := cl.event == change.AddMembers || cl.event == change.RemoveMembers
	switch {
	case fc.Send != "" && cl.event != change.Update:
		return c.errf(cl.rule+".send", "only an update chooses what to send")
	case cl.event == change.Update:
		switch fc.Send {
		case "", "changed":
			cl.send = sendChanged
		case "all":
			cl.send = sendAll
		default:
			return c.errf(cl.rule+".send", "%q is neither \"changed\" nor \"all\"", fc.Send)
		}
	}
	if err := c.compileIDPath(cl, fc.ID); err != nil {
		return err
	}
	if err := c.compileEncoding(cl, fc); err != nil {
		return err
	}
	if err := c.compileListOptions(cl, fc); err != nil {
		return err
	}
	if !isMember {
		if fc.Members != "" || fc.BatchSize != 0 || fc.MemberTypes != nil {
			return c.errf(cl.rule, "members, batch_size and member_types apply to add_members and remove_members only")
		}
		return nil
	}
	return c.compileMemberOptions(cl, fc)
}

func (c *compiler) compileIDPath(cl *call, raw json.RawMessage) error {
	id, err := c.compileIDSource(cl.rule+".id", raw)
	if err != nil {
		return err
	}
	switch {
	case !id.IsSet() && cl.event == lookupCall:
		return c.errf(cl.rule+".id", "missing: a lookup needs the gjson path of the native id in its response (e.g. \"items.0.id\")")
	case !id.IsSet() && isList(cl.event):
		return c.errf(cl.rule+".id", "missing: a list needs the gjson path of the native id in each item (e.g. \"id\")")
	case !id.IsSet():
		return nil
	case cl.event != change.Create && cl.event != lookupCall && !isList(cl.event):
		return c.errf(cl.rule+".id", "only create and lookup responses carry the native id")
	case isList(cl.event) && id.Path == "":
		return c.errf(cl.rule+".id", "a list finds the native id in each item: give a gjson path such as \"id\"")
	case cl.event == lookupCall && id.Path == "":
		return c.errf(cl.rule+".id", "a lookup finds the native id in its JSON body: give a gjson path such as \"items.0.id\"")
	}
	cl.id, cl.idPath = id, id.Path
	return nil
}

func (c *compiler) compileMemberOptions(cl *call, fc *fileCall) error {
	switch fc.Members {
	case "", "each":
		cl.members = membersEach
		if fc.BatchSize != 0 {
			return c.errf(cl.rule+".batch_size", "applies to \"members\": \"batch\" only")
		}
	case "batch":
		cl.members = membersBatch
		cl.batchSize = DefaultBatchSize
		if fc.BatchSize != 0 {
			if fc.BatchSize < 1 || fc.BatchSize > MaxBatchSize {
				return c.errf(cl.rule+".batch_size", "must be between 1 and %d", MaxBatchSize)
			}
			cl.batchSize = fc.BatchSize
		}
	default:
		return c.errf(cl.rule+".members", "%q is neither \"each\" (one call per member) nor \"batch\" (one call with the list)", fc.Members)
	}
	cl.memberTypes = []string{scim.UserType}
	if fc.MemberTypes != nil {
		cl.memberTypes = nil
		for _, t := range fc.MemberTypes {
			rt := scim.ResourceTypeByName(t)
			if rt == nil {
				return c.errf(cl.rule+".member_types", "unknown member type %q; use \"User\" and/or \"Group\"", t)
			}
			cl.memberTypes = append(cl.memberTypes, rt.Name)
		}
		if len(cl.memberTypes) == 0 {
			return c.errf(cl.rule+".member_types", "empty: no member would ever be sent")
		}
	}
	return nil
}

// headerField is a header whose value a request computes, like a body field's.
type headerField struct {
	name  string
	field *field
}

// compileCallHeaders compiles a call's "headers": a string is a fixed value (its
// placeholders, such as {env.KEY}, resolved at load, as at the outer levels); an object is
// a field computed for each request like a body field ({"from": "$header.0.ETag"}: the
// ETag of the flow's first answer, for an app that wants If-Match on its writes).
func (c *compiler) compileCallHeaders(rt string, cl *call, outer http.Header, in map[string]json.RawMessage) error {
	fixed := make(map[string]string, len(in))
	for _, name := range sortedKeys(in) {
		raw := in[name]
		hr := fmt.Sprintf("%s.headers[%q]", cl.rule, name)
		var v string
		if json.Unmarshal(raw, &v) == nil {
			fixed[name] = v
			continue
		}
		if !validHeaderName(name) {
			return c.errf(hr, "%q is not a valid header name", name)
		}
		if raw = bytes.TrimSpace(raw); len(raw) == 0 || raw[0] != '{' {
			return c.errf(hr, "a header's value is a string (fixed) or a field object such as {\"from\": \"$header.0.ETag\"}")
		}
		switch http.CanonicalHeaderKey(name) {
		case "Content-Type", "Content-Length", "Host", "Transfer-Encoding", "Authorization":
			return c.errf(hr, "%s is set by the gateway or the target's auth, not from a request's data", http.CanonicalHeaderKey(name))
		}
		f, err := c.compileField(rt, hr, "value", raw)
		if err != nil {
			return err
		}
		cl.headerFields = append(cl.headerFields, &headerField{name: http.CanonicalHeaderKey(name), field: f})
	}
	var err error
	cl.header, err = c.compileHeaders(cl.rule+".headers", outer, fixed)
	return err
}

// setHeaders sets the computed headers on h: a value that is absent leaves the header
// out (the app's own answer says what it misses); one that is not a single line of text
// fails the request.
func (cl *call) setHeaders(ev *evalCtx, h http.Header) error {
	for _, hf := range cl.headerFields {
		v, ok, err := hf.field.eval(ev)
		if err != nil {
			return err
		}
		if isEmpty(v, ok) {
			h.Del(hf.name)
			continue
		}
		text, isText := scalarText(v)
		if !isText || !validHeaderValue(text) || len(text) > maxTemplateLen {
			return fmt.Errorf("%s: the value (%s) is not one line of text of at most %d bytes", hf.field.rule, typeName(v), maxTemplateLen)
		}
		h.Set(hf.name, text)
	}
	return nil
}

// checkGatewayValues checks that every gateway value a call uses exists for its event, and
// that member calls have a source for the members' native ids.
func (c *compiler) checkGatewayValues(cl *call) error {
	uses := func(reserved string) (string, bool) {
		if cl.path.uses(reserved) {
			return cl.rule + ".path", true
		}
		for _, f := range cl.fields {
			if f.uses(reserved) {
				return f.rule, true
			}
		}
		for _, hf := range cl.headerFields {
			if hf.field.uses(reserved) {
				return hf.field.rule, true
			}
		}
		return "", false
	}
	if where, ok := uses(srcNativeID); ok && ((cl.event == change.Create && !c.flowHasID) || cl.event == lookupCall || cl.event == listCall) {
		return c.errf(where, "uses the native id ({id} or $id), which does not exist yet in a %s", cl.event)
	}
	if where, ok := uses(srcMemberID); ok && cl.members != membersEach {
		return c.errf(where, "uses a member's native id ({member_id} or $member_id), which exists only in add_members and remove_members with \"members\": \"each\"")
	}
	if where, ok := uses(srcMemberIDs); ok && cl.members != membersBatch {
		return c.errf(where, "uses $member_ids, which exists only in add_members and remove_members with \"members\": \"batch\"")
	}
	if where, ok := uses(srcRoleIDs); ok && cl.event != assignCall {
		return c.errf(where, "uses $role_ids, which exists only in groups.roles.assign (the call that sets a user's roles)")
	}
	switch cl.members {
	case membersEach:
		if _, ok := uses(srcMemberID); !ok {
			return c.errf(cl.rule, "has no source for the member's native id: put {member_id} in the path or \"from\": \"$member_id\" in the body")
		}
	case membersBatch:
		if _, ok := uses(srcMemberIDs); !ok {
			return c.errf(cl.rule, "has no source for the members' native ids: a batch call needs a body field with \"from\": \"$member_ids\"")
		}
	}
	return nil
}

// compileBody compiles the body's fields in file order and checks that no native path is
// inside another (sjson would overwrite one with the other).
func (c *compiler) compileBody(rt, rule string, body *orderedObject) ([]*field, error) {
	if len(body.members) > maxFieldsPerCall {
		return nil, c.errf(rule, "more than %d fields", maxFieldsPerCall)
	}
	fields := make([]*field, 0, len(body.members))
	for _, m := range body.members {
		f, err := c.compileField(rt, fmt.Sprintf("%s[%q]", rule, m.key), m.key, m.raw)
		if err != nil {
			return nil, err
		}
		for _, g := range fields {
			if compsPrefix(g.comps, f.comps) || compsPrefix(f.comps, g.comps) {
				return nil, c.errf(f.rule, "overlaps the field %q: one native path cannot hold both a value and fields inside it", g.native)
			}
		}
		fields = append(fields, f)
	}
	return fields, nil
}

func compsPrefix(a, b []string) bool {
	if len(a) > len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// generators are the transforms that produce a value from nothing, so a field may start
// with one of them instead of "from" or "value".
var generators = map[string]bool{"constant": true, "default": true, "template": true, "first_non_empty": true}

func (c *compiler) compileField(rt, rule, native string, raw json.RawMessage) (*field, error) {
	f := &field{rule: rule, native: native}
	var err error
	if f.sjsonPath, f.comps, err = compileNativePath(native); err != nil {
		return nil, c.wrap(rule, err)
	}
	var ff fileField
	var asString string
	if json.Unmarshal(raw, &asString) == nil {
		ff.From = asString
	} else if err := decodeStrict(raw, &ff); err != nil {
		return nil, c.wrap(rule, fmt.Errorf("a field is a SCIM path or an object with \"from\" or \"value\" and \"transforms\": %w", err))
	}
	if err := c.compileFieldSource(rt, f, &ff); err != nil {
		return nil, err
	}
	if len(ff.Transforms) > maxTransforms {
		return nil, c.errf(rule+".transforms", "more than %d transforms", maxTransforms)
	}
	for _, traw := range ff.Transforms {
		spec, err := parseTransformSpec(traw)
		if err != nil {
			return nil, c.wrap(rule, err)
		}
		t, err := compileTransform(rt, spec, c.tables)
		if err != nil {
			return nil, c.wrap(rule, err)
		}
		f.transforms = append(f.transforms, t)
		for _, s := range t.sources {
			f.addDep(s)
		}
	}
	f.required = ff.Required
	if f.src == nil && !f.hasValue && (len(f.transforms) == 0 || !generators[f.transforms[0].name]) {
		return nil, c.errf(rule, "never has a value: give \"from\" (a SCIM path), \"value\", or start the transforms with constant, default, template or first_non_empty")
	}
	return f, nil
}

func (c *compiler) compileFieldSource(rt string, f *field, ff *fileField) error {
	hasValue := ff.Value != nil
	if ff.From != "" && hasValue {
		return c.errf(f.rule, "has both \"from\" and \"value\"; a field takes its value from one")
	}
	if hasValue {
		v, err := decodeValue(ff.Value)
		if err != nil {
			return c.wrap(f.rule+".value", err)
		}
		f.value, f.hasValue = v, true
	}
	if ff.From == "" {
		return nil
	}
	src, err := compileSource(rt, ff.From)
	if err != nil {
		return c.wrap(f.rule, err)
	}
	f.src = src
	f.addDep(src)
	return nil
}

func (f *field) addDep(s *source) {
	if s.reserved == "" {
		f.deps = append(f.deps, s.key)
	}
}

// uses reports whether the field reads the gateway value reserved.
func (f *field) uses(reserved string) bool {
	if f.src != nil && f.src.reserved == reserved {
		return true
	}
	for _, t := range f.transforms {
		for _, s := range t.sources {
			if s.reserved == reserved {
				return true
			}
		}
	}
	return false
}

// checkConsistency checks what no single call can: a native id used by one call must be
// produced by another (create's "id" or the lookup), for the resource itself and for the
// members of groups, and member calls need groups with native ids (the gateway makes them
// only for a group it knows the account of), whether or not their URL names {id}.
func (c *compiler) checkConsistency(m *Mapping) error {
	if err := c.checkRoles(m); err != nil {
		return err
	}
	for _, rt := range []string{scim.UserType, scim.GroupType} {
		rm := m.types[rt]
		if rm == nil {
			continue
		}
		for _, ev := range eventsOf[rt] {
			for _, cl := range rm.calls[ev] {
				if err := c.checkCallConsistency(m, rt, ev, cl); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (c *compiler) checkCallConsistency(m *Mapping, rt string, ev change.Event, cl *call) error {
	if cl.id.Header != "" && m.types[rt].lookup == nil {
		// An answer without the header (a proxy's 201, a changed app) leaves an account the
		// gateway has no id for; only a lookup finds it again instead of making a second.
		return c.errf(cl.rule+".id", "the native id comes from %s, so a create answered without it must be found again: add %s.lookup", cl.id, sectionOf[rt])
	}
	if where, ok := cl.usesNativeID(); ok && ev != change.Create && !m.knowsNativeIDs(rt) {
		return c.errf(where, "uses {id}, but neither %s.events.create nor %s.lookup says where the native id is (add \"id\")", sectionOf[rt], sectionOf[rt])
	}
	if cl.members != membersNone && !m.knowsNativeIDs(rt) {
		// The gateway makes a group's member calls only for a group with an
		// account in the app, which it knows by its native id.
		return c.errf(cl.rule, "%s never get native ids (no create with \"id\" and no lookup), so this call can never be made; add one, or remove the member events", sectionOf[rt])
	}
	for _, mt := range cl.memberTypes {
		if !m.knowsNativeIDs(mt) {
			return c.errf(cl.rule, "members are sent by native id, but %s have no create \"id\" or lookup to learn it from", sectionOf[mt])
		}
	}
	return nil
}

func (cl *call) usesNativeID() (string, bool) {
	if cl.path.uses(srcNativeID) {
		return cl.rule + ".path", true
	}
	for _, f := range cl.fields {
		if f.uses(srcNativeID) {
			return f.rule, true
		}
	}
	return "", false
}

// knowsNativeIDs reports whether the gateway can learn native ids of resourceType.
func (m *Mapping) knowsNativeIDs(resourceType string) bool {
	rm := m.types[resourceType]
	if rm == nil {
		return false
	}
	for _, cr := range rm.calls[change.Create] {
		if cr.id.IsSet() {
			return true
		}
	}
	return rm.lookup != nil
}

var errNoIDMap = errors.New("the gateway passed no id map (Input.NativeIDOf) to resolve a reference")
