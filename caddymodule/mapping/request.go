package mapping

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// maxNativeIDLen bounds a native id read from a response.
const maxNativeIDLen = 1024

// Member is one member of a membership change, with its native id already looked up in
// the id map by the gateway.
type Member struct {
	SCIMID, NativeID, Type string
}

// Input is one semantic event of one resource, as the gateway decided it.
type Input struct {
	ResourceType string        // "User" | "Group"
	Event        change.Event  // the semantic event whose calls to build
	Resource     scim.Resource // after (the full stored document, id included); for delete, the document being deleted
	Previous     scim.Resource // before, nil on create
	Changed      []string      // changed attribute paths (for send: changed)
	NativeID     string        // the resource's native id (empty on create)
	Members      []Member      // for member events
	// NativeIDOf looks up, in the gateway's directory, a resource another one references
	// (a user's manager): its native id and what the directory knows of it.
	NativeIDOf func(scimID string) (nativeID string, state RefState)
	// RoleIDs are the user's roles, every one, for groups.roles.assign ($role_ids).
	RoleIDs []string
	// Answers are the answers of the flow's calls made so far, one per call in order (an
	// empty one for a call whose condition did not hold), for $answer and $header.
	Answers []Answer
}

// RefState is what the directory knows of a referenced resource (Input.NativeIDOf).
type RefState int

const (
	// RefPending: the resource is in the directory but has no account in the app yet (or
	// the directory could not be read). The reference cannot be sent yet: the change fails
	// with 400 and converges when Entra retries it after the account exists. The zero
	// value, so that an id map that says nothing more waits rather than drops a link.
	RefPending RefState = iota
	// RefLinked: the resource has an account in the app; the native id is its id there.
	RefLinked
	// RefGone: the directory has no such resource (it was deleted, or never provisioned
	// through the gateway). Nothing will ever give it an account, so the reference is
	// sent as no reference: absent, or null where the mapping clears absent values.
	RefGone
)

// Request is one native call to make, relative to the target's base URL.
type Request struct {
	Method string
	Path   string // path and query, to append to the target's base URL
	Header http.Header
	Body   []byte // nil when the call has no body
	// Idempotent is true when the call may be retried after a failure in flight: GET, PUT
	// and DELETE, or a call the mapping declares idempotent.
	Idempotent bool
	// IDPath is the gjson path of the native id in the response body (create and lookup
	// only; "" when the id comes from a header).
	IDPath string
	// ID is where the answer gives the native id (create and lookup only): IDPath, a
	// header, or the Location header.
	ID IDSource
	// Expect is what the answer must look like to prove the call worked.
	Expect *legacy.Expect
	// Paging, for a lookup or a list, is how to follow the answer's pages (nil: one page);
	// pass it to legacy.Client.Pages.
	Paging *legacy.Paging
	// ItemsPath, for a list or a lookup, is the gjson path of each page's items; IDPath
	// is then the native id's path within an item.
	ItemsPath string
	// Match, for a lookup with ItemsPath, are the values (by gjson path in an item) the
	// account's item holds, compared case-insensitively (see FindID).
	Match map[string]string
}

// Answer is what an earlier call of the flow answered, for $answer and $header.
type Answer struct {
	Header http.Header
	Body   []byte
}

// evalCtx is what sources and transforms read while one request is built.
type evalCtx struct {
	in        *Input
	doc       scim.Resource
	member    *Member
	memberIDs []any
}

func (ev *evalCtx) reserved(name string) (any, bool, error) {
	switch name {
	case srcNativeID:
		return ev.in.NativeID, ev.in.NativeID != "", nil
	case srcSCIMID:
		v, ok := scim.Get(ev.doc, "id")
		s, isStr := v.(string)
		return s, ok && isStr && s != "", nil
	case srcMemberID:
		if ev.member == nil {
			return nil, false, errors.New("no member in this call")
		}
		return ev.member.NativeID, true, nil
	case srcMemberIDs:
		return ev.memberIDs, true, nil
	case srcRoleIDs:
		ids := make([]any, len(ev.in.RoleIDs))
		for i, id := range ev.in.RoleIDs {
			ids[i] = id
		}
		return ids, true, nil
	case srcAnswer, srcHeader:
		return nil, false, errors.New("answer values are read by their source")
	}
	return nil, false, fmt.Errorf("unknown gateway value %s", name)
}

// Has reports whether the mapping has a native call for the event of the resource type.
// The gateway skips events without one, and its journal record says so.
func (m *Mapping) Has(resourceType string, event change.Event) bool {
	rm := m.resource(resourceType)
	return rm != nil && len(rm.calls[event]) > 0
}

// IDStep is the step of the create's flow whose answer gives the native id (-1: none). A
// create adopted from an unfinished earlier attempt resumes after it.
func (m *Mapping) IDStep(resourceType string) int {
	if rm := m.resource(resourceType); rm != nil {
		for i, cl := range rm.calls[change.Create] {
			if cl.id.IsSet() {
				return i
			}
		}
	}
	return -1
}

// FlowLen is the number of calls the event's flow has (0: the event has no call).
func (m *Mapping) FlowLen(resourceType string, event change.Event) int {
	rm := m.resource(resourceType)
	if rm == nil {
		return 0
	}
	return len(rm.calls[event])
}

// Carries reports whether the event's call sends attr (a SCIM attribute path such as
// "active") in its body, so that a create that cannot carry a state the resource starts in
// (an account created disabled) can be followed by the event that sets it.
func (m *Mapping) Carries(resourceType string, event change.Event, attr string) bool {
	rm := m.resource(resourceType)
	if rm == nil {
		return false
	}
	key := changedKey(resourceType, attr)
	for _, cl := range rm.calls[event] {
		if cl.when.mentions(key) {
			return true // the flow decides on attr itself (create, then suspend when inactive)
		}
		if cl.when != nil {
			continue // a call that may not be made carries nothing for sure
		}
		for _, f := range cl.fields {
			if f.changedIn([]string{key}) {
				return true
			}
		}
	}
	return false
}

// Reads returns the SCIM attributes (canonical, lower-case paths, sorted) the fields of
// the event's calls are made from: as Input.Changed, they make a changed-only update send
// every field it maps, one whose attribute is absent as the app clears it.
func (m *Mapping) Reads(resourceType string, event change.Event) []string {
	rm := m.resource(resourceType)
	if rm == nil {
		return nil
	}
	var out []string
	for _, cl := range rm.calls[event] {
		for _, f := range cl.fields {
			for _, d := range f.deps {
				if !slices.Contains(out, d) {
					out = append(out, d)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

func (m *Mapping) resource(resourceType string) *resourceMapping {
	rt := scim.ResourceTypeByName(resourceType)
	if rt == nil {
		return nil
	}
	return m.types[rt.Name]
}

// Requests builds the native calls for one event, in the order to make them. It returns
// nil, nil when the event has no call, when an update in "send": "changed" mode changed no
// mapped attribute, and when a membership change has no member of the call's member types.
// Errors about the data (a value a transform cannot convert, a required value that is
// empty, a manager with no native account yet) are *scim.Error 400 invalidValue, fit to
// answer to the client; any other error is the gateway's own mistake.
//
// For an event mapped to a flow of several calls, Requests builds every call with in as it
// is; a create's flow whose later calls use the native id its first answer gives is built
// a step at a time with StepRequests.
func (m *Mapping) Requests(in Input) ([]Request, error) {
	n := m.FlowLen(in.ResourceType, in.Event)
	if n == 0 {
		_, err := m.flowCall(in, 0) // the errors of a bad resource type or event
		return nil, err
	}
	var out []Request
	for step := range n {
		reqs, err := m.StepRequests(in, step)
		if err != nil {
			return nil, err
		}
		out = append(out, reqs...)
	}
	return out, nil
}

// flowCall returns the call of step in the event's flow (nil when there is none).
func (m *Mapping) flowCall(in Input, step int) (*call, error) {
	rt := scim.ResourceTypeByName(in.ResourceType)
	if rt == nil {
		return nil, fmt.Errorf("mapping %s: unknown resource type %q", m.name, in.ResourceType)
	}
	if !validEvent(rt.Name, in.Event) {
		return nil, fmt.Errorf("mapping %s: %s have no event %q", m.name, sectionOf[rt.Name], in.Event)
	}
	rm := m.types[rt.Name]
	if rm == nil || step < 0 || step >= len(rm.calls[in.Event]) {
		return nil, nil
	}
	return rm.calls[in.Event][step], nil
}

// StepRequests builds the requests of one call (step, from 0) of the event's flow: none
// when the call's condition does not hold for the change, or as Requests says.
func (m *Mapping) StepRequests(in Input, step int) ([]Request, error) {
	cl, err := m.flowCall(in, step)
	if err != nil || cl == nil {
		return nil, err
	}
	rt := scim.ResourceTypeByName(in.ResourceType)
	ev := &evalCtx{in: &in, doc: in.Resource}
	if ev.doc == nil {
		ev.doc = in.Previous
	}
	if ok, err := cl.when.holds(ev); err != nil {
		return nil, cl.explain(err, cl.rule+".when")
	} else if !ok {
		return nil, nil
	}
	var changed []string
	if cl.send == sendChanged || (in.Event == change.Update && in.Changed != nil) {
		changed = make([]string, len(in.Changed))
		for i, p := range in.Changed {
			changed[i] = changedKey(rt.Name, p)
		}
	}
	if cl.send == sendAll && in.Event == change.Update && in.Changed != nil && !cl.reads(changed) {
		// A full update that none of the changed attributes feed would send the app what
		// it already holds.
		return nil, nil
	}
	if cl.send == sendAll {
		changed = nil
	}
	switch cl.members {
	case membersEach:
		return cl.eachMember(ev)
	case membersBatch:
		return cl.batchMembers(ev)
	}
	req, ok, err := cl.build(ev, changed)
	if err != nil || !ok {
		return nil, err
	}
	return []Request{req}, nil
}

// LookupRequest builds the reconciliation lookup for r (find the native resource by a
// natural key). ok is false when the resource type has no lookup.
func (m *Mapping) LookupRequest(resourceType string, r scim.Resource) (*Request, bool, error) {
	rm := m.resource(resourceType)
	if rm == nil || rm.lookup == nil {
		return nil, false, nil
	}
	in := &Input{ResourceType: rm.typ, Event: lookupCall, Resource: r}
	ev := &evalCtx{in: in, doc: r}
	req, _, err := rm.lookup.build(ev, nil)
	if err != nil {
		return nil, true, err
	}
	for _, mr := range rm.lookup.match {
		v, ok, err := mr.tpl.renderText(ev)
		if err != nil || !ok {
			return nil, true, dataError("%s.match[%q]: the account cannot be looked up without a value", rm.lookup.rule, mr.path)
		}
		if req.Match == nil {
			req.Match = map[string]string{}
		}
		req.Match[mr.path] = v
	}
	return &req, true, nil
}

// selectMembers returns the input's members of the call's member types, checking each has a
// native id.
func (cl *call) selectMembers(ev *evalCtx) ([]*Member, error) {
	var out []*Member
	for i := range ev.in.Members {
		mb := &ev.in.Members[i]
		typ := mb.Type
		if typ == "" {
			typ = scim.UserType
		}
		if !containsFold(cl.memberTypes, typ) {
			continue
		}
		if mb.NativeID == "" {
			return nil, dataError("the member %q has no account in the app yet", mb.SCIMID)
		}
		out = append(out, mb)
	}
	return out, nil
}

func (cl *call) eachMember(ev *evalCtx) ([]Request, error) {
	members, err := cl.selectMembers(ev)
	if err != nil || len(members) == 0 {
		return nil, err
	}
	out := make([]Request, 0, len(members))
	for _, mb := range members {
		ev.member = mb
		req, _, err := cl.build(ev, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, req)
	}
	return out, nil
}

func (cl *call) batchMembers(ev *evalCtx) ([]Request, error) {
	members, err := cl.selectMembers(ev)
	if err != nil || len(members) == 0 {
		return nil, err
	}
	out := make([]Request, 0, (len(members)+cl.batchSize-1)/cl.batchSize)
	for start := 0; start < len(members); start += cl.batchSize {
		chunk := members[start:min(start+cl.batchSize, len(members))]
		ids := make([]any, len(chunk))
		for i, mb := range chunk {
			ids[i] = mb.NativeID
		}
		ev.memberIDs = ids
		req, _, err := cl.build(ev, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, req)
	}
	return out, nil
}

// build makes one request. ok is false when a changed-only update has nothing to send.
// changed is nil unless the call sends changed attributes only.
func (cl *call) build(ev *evalCtx, changed []string) (Request, bool, error) {
	path, err := cl.path.renderURL(ev)
	if err != nil {
		return Request{}, false, cl.explain(err, cl.rule+".path")
	}
	req := Request{Method: cl.method, Path: path, Idempotent: cl.idempotent, IDPath: cl.idPath, ID: cl.id, Expect: cl.expect,
		Paging: cl.paging, ItemsPath: cl.items}
	if len(cl.fields) > 0 {
		body, n, err := cl.buildBody(ev, changed)
		if err != nil {
			return Request{}, false, err
		}
		if n == 0 && cl.send == sendChanged {
			return Request{}, false, nil
		}
		req.Body = body
	}
	req.Header = cl.header.Clone()
	if err := cl.setHeaders(ev, req.Header); err != nil {
		return Request{}, false, err
	}
	if req.Body != nil && cl.form != nil {
		if req.Body, err = cl.form.encode(req.Body); err != nil {
			return Request{}, false, dataError("%s: %v", cl.rule+".body", err)
		}
		req.Header.Set("Content-Type", formContentType)
	}
	if req.Body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, true, nil
}

// buildBody sets each field at its native path. With send: changed, only fields whose
// SCIM sources changed are sent, and one whose value is now absent is sent as null so the
// app clears it. Otherwise absent values are left out.
func (cl *call) buildBody(ev *evalCtx, changed []string) ([]byte, int, error) {
	body := make([]byte, 0, 64*len(cl.fields))
	body = append(body, '{', '}')
	n := 0
	for _, f := range cl.fields {
		if cl.send == sendChanged && !f.changedIn(changed) {
			continue
		}
		v, ok, err := f.eval(ev)
		if err != nil {
			return nil, 0, err
		}
		if f.required && isEmpty(v, ok) {
			return nil, 0, dataError("%s is required by the app, but %s is empty", f.rule, f.describeSource())
		}
		if !ok {
			if cl.send != sendChanged {
				continue
			}
			v = nil
		}
		if body, err = sjson.SetBytes(body, f.sjsonPath, v); err != nil {
			return nil, 0, fmt.Errorf("%s: setting %q: %w", f.rule, f.native, err)
		}
		n++
	}
	return body, n, nil
}

// reads reports whether any field of the call reads one of the changed attributes.
func (cl *call) reads(changed []string) bool {
	for _, f := range cl.fields {
		if f.changedIn(changed) {
			return true
		}
	}
	return false
}

// changedIn reports whether any SCIM attribute the field reads is among the changed ones.
func (f *field) changedIn(changed []string) bool {
	for _, d := range f.deps {
		for _, c := range changed {
			if keysOverlap(d, c) {
				return true
			}
		}
	}
	return false
}

// eval computes the field's value.
func (f *field) eval(ev *evalCtx) (any, bool, error) {
	var v any
	var ok bool
	switch {
	case f.src != nil:
		var err error
		if v, ok, err = f.src.resolve(ev); err != nil {
			return nil, false, f.explain(err)
		}
	case f.hasValue:
		v, ok = f.value, true
	}
	for _, t := range f.transforms {
		var err error
		if v, ok, err = t.apply(ev, v, ok); err != nil {
			return nil, false, f.explain(fmt.Errorf("transform %s: %w", t.name, err))
		}
	}
	return v, ok, nil
}

// explain turns an error into what the gateway reports: scim errors (already meant for
// the client) and the gateway's own mistakes pass through; a transform that cannot
// convert the data becomes a 400 naming the rule and the source, never the value (which
// may be personal data).
func (f *field) explain(err error) error {
	var se *scim.Error
	if errors.As(err, &se) || errors.Is(err, errNoIDMap) {
		return err
	}
	return dataError("%s (from %s): %v", f.rule, f.describeSource(), err)
}

func (cl *call) explain(err error, rule string) error {
	var se *scim.Error
	if errors.As(err, &se) {
		return scim.BadRequest(se.ScimType, "%s: %s", rule, se.Detail)
	}
	return fmt.Errorf("%s: %w", rule, err)
}

func (f *field) describeSource() string {
	switch {
	case f.src != nil:
		return f.src.text
	case f.hasValue:
		return "a constant"
	}
	return "its transforms"
}

// ExtractID reads the native id at path in a response body. The body is validated as
// JSON first (gjson does not validate), and one that holds a key twice in an object is
// refused (which of the two is meant is ambiguous); a number is returned as its decimal text, so that
// 42 and "42" name the same account. Objects, lists, booleans, null, empty strings and
// non-integral numbers are errors.
func ExtractID(body []byte, path string) (string, error) {
	if !gjson.ValidBytes(body) {
		return "", errors.New("the response is not valid JSON")
	}
	if err := ambiguous(body); err != nil {
		return "", err
	}
	return extractID(body, path)
}

// extractID is ExtractID on a body already validated (an item of a list listAt read).
func extractID(body []byte, path string) (string, error) {
	res := gjson.GetBytes(body, path)
	if !res.Exists() {
		return "", fmt.Errorf("the response has no native id at %q", path)
	}
	var id string
	switch res.Type {
	case gjson.String:
		id = res.Str
	case gjson.Number:
		var err error
		if id, err = integerText(res.Raw); err != nil {
			return "", fmt.Errorf("the native id at %q: %w", path, err)
		}
	default:
		return "", fmt.Errorf("the native id at %q is %s, not a string or a number", path, gjsonTypeName(res))
	}
	if strings.TrimSpace(id) == "" {
		return "", fmt.Errorf("the native id at %q is empty", path)
	}
	if len(id) > maxNativeIDLen {
		return "", fmt.Errorf("the native id at %q is longer than %d bytes", path, maxNativeIDLen)
	}
	if hasControl(id) {
		// As for an id from a header: no id the gateway could map and send back (the id
		// map refuses a NUL, and the create's account would be made but never mapped).
		return "", fmt.Errorf("the native id at %q holds a control character", path)
	}
	return id, nil
}

// hasControl reports whether s holds a C0 control character or DEL.
func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

// integerText renders a number's text (a JSON number, a numeric string) as decimal
// integer text, exactly: integers keep their digits (ids beyond 2^53 must not be rounded
// through float64), and a decimal or exponent form is read exactly too
// ("9007199254740993.0" is 9007199254740993, not the float64 ...992). A number that is not
// an integer, or that neither int64 nor uint64 holds, is an error.
func integerText(raw string) (string, error) {
	if n, err := strconv.ParseInt(raw, 10, 64); err == nil {
		return strconv.FormatInt(n, 10), nil
	}
	if n, err := strconv.ParseUint(raw, 10, 64); err == nil {
		return strconv.FormatUint(n, 10), nil
	}
	if len(raw) > 64 {
		return "", fmt.Errorf("%.64s… is not an integer", raw)
	}
	f, _, err := big.ParseFloat(raw, 10, 256, big.ToNearestEven)
	if err != nil || f.IsInf() || !f.IsInt() {
		return "", fmt.Errorf("%s is not an integer", raw)
	}
	if f.Cmp(maxUint64) > 0 || f.Cmp(minInt64) < 0 {
		return "", fmt.Errorf("%s is out of the range of a 64-bit integer", raw)
	}
	i, _ := f.Int(nil)
	return i.String(), nil
}

var (
	maxUint64 = new(big.Float).SetUint64(math.MaxUint64)
	minInt64  = new(big.Float).SetInt64(math.MinInt64)
)

func gjsonTypeName(r gjson.Result) string {
	switch {
	case r.IsObject():
		return "an object"
	case r.IsArray():
		return "a list"
	case r.Type == gjson.Null:
		return "null"
	case r.IsBool():
		return "a boolean"
	case r.Type == gjson.String:
		return "a string"
	}
	return "a number"
}
