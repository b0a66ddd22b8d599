package mapping

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/internal/regfile"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// Bounds on the mapping file.
const (
	// MaxFileSize is the largest mapping file accepted.
	MaxFileSize = 4 << 20
	// DefaultBatchSize is how many member ids one batch call carries unless the call
	// sets batch_size.
	DefaultBatchSize = 100
	// MaxBatchSize bounds batch_size.
	MaxBatchSize     = 10000
	maxFieldsPerCall = 1000
	maxTransforms    = 32
	maxGJSONPath     = 512
)

// eventsOf lists the semantic events each resource type maps, in documentation order.
var eventsOf = map[string][]change.Event{
	scim.UserType:  {change.Create, change.Update, change.Deactivate, change.Reactivate, change.Delete},
	scim.GroupType: {change.Create, change.Update, change.Delete, change.AddMembers, change.RemoveMembers},
}

// lookupCall names a resource type's lookup call where calls are told apart by event: it
// is not a semantic event (no change makes it), the gateway makes it to find an account.
const lookupCall change.Event = "lookup"

// sectionOf is the file's key for each resource type.
var sectionOf = map[string]string{scim.UserType: "users", scim.GroupType: "groups"}

// LoadError is a mapping file that cannot be used: File is the name given to Load or
// Parse, Rule says where in the file (users.events.create.body["person.first"]).
type LoadError struct {
	File string
	Rule string
	Err  error
}

func (e *LoadError) Error() string {
	if e.Rule == "" {
		return e.File + ": " + e.Err.Error()
	}
	return e.File + ": " + e.Rule + ": " + e.Err.Error()
}

func (e *LoadError) Unwrap() error { return e.Err }

// Mapping is a compiled mapping file. It is immutable and safe for concurrent use.
type Mapping struct {
	name  string
	types map[string]*resourceMapping // by scim.UserType / scim.GroupType
}

// resourceMapping is the compiled section of one resource type.
type resourceMapping struct {
	typ    string
	calls  map[change.Event][]*call // each event's flow: one call, or several in order
	lookup *call
	roles  *Roles // groups that are the app's roles (groups.roles), nil otherwise
	list   *call  // nil: the app's accounts cannot be listed
	// listMembers (groups): the members of one group; nil: they cannot be listed
	listMembers *call
	// batch: the app's bulk create (create_batch); nil: one create per call
	batch *batchCall
}

// Load reads and compiles the mapping file at path. resolve expands placeholders such as
// {env.DEMO_KEY} in header values, once, here; nil leaves header values as written.
func Load(path string, resolve func(string) (string, error)) (*Mapping, error) {
	name := filepath.Base(path)
	data, err := regfile.Read(path, MaxFileSize)
	var notRegular *regfile.NotRegularError
	var tooLarge *regfile.TooLargeError
	switch {
	case errors.As(err, &notRegular):
		err = fmt.Errorf("%w: name the mapping's JSON file", err)
	case errors.As(err, &tooLarge):
		return nil, &LoadError{File: name, Err: fmt.Errorf("the mapping is larger than %d bytes", MaxFileSize)}
	}
	if err != nil {
		return nil, &LoadError{File: name, Err: fmt.Errorf("reading the mapping: %w", err)}
	}
	return Parse(name, data, resolve)
}

// Parse compiles a mapping from data; name is used in error messages (the file name).
func Parse(name string, data []byte, resolve func(string) (string, error)) (*Mapping, error) {
	if resolve == nil {
		resolve = func(s string) (string, error) { return s, nil }
	}
	c := &compiler{file: name, resolve: resolve}
	m, err := c.compile(data)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// compiler carries what every rule needs while the file is compiled.
type compiler struct {
	file    string
	resolve func(string) (string, error)
	tables  map[string]map[string]any
	headers http.Header // file-wide headers
	expect  *fileExpect // file-wide expectations of answers
	// flowHasID is set while a flow is compiled once one of its calls reads the native id
	// from its answer: the calls after it may use {id}.
	flowHasID bool
}

func (c *compiler) errf(rule string, format string, args ...any) error {
	return &LoadError{File: c.file, Rule: rule, Err: fmt.Errorf(format, args...)}
}

func (c *compiler) wrap(rule string, err error) error {
	var le *LoadError
	if errors.As(err, &le) {
		return err
	}
	return &LoadError{File: c.file, Rule: rule, Err: err}
}

func (c *compiler) compile(data []byte) (*Mapping, error) {
	if len(data) > MaxFileSize {
		return nil, c.errf("", "the mapping is larger than %d bytes", MaxFileSize)
	}
	var fm fileMapping
	if err := decodeStrict(data, &fm); err != nil {
		return nil, c.wrap("", err)
	}
	if rule, err := checkDuplicateKeys(data); err != nil {
		return nil, c.wrap(rule, err)
	}
	if fm.Version != 1 {
		return nil, c.errf("version", "unsupported version %d; this gateway reads version 1 (write \"version\": 1)", fm.Version)
	}
	c.tables = fm.Tables
	c.expect = fm.Expect
	for name, tbl := range fm.Tables {
		if tbl == nil {
			return nil, c.errf(fmt.Sprintf("tables[%q]", name), "a table is an object mapping values to values")
		}
	}
	var err error
	if c.headers, err = c.compileHeaders("headers", nil, fm.Headers); err != nil {
		return nil, err
	}
	m := &Mapping{name: c.file, types: make(map[string]*resourceMapping, 2)}
	for _, rt := range []string{scim.UserType, scim.GroupType} {
		raw := fm.Users
		if rt == scim.GroupType {
			raw = fm.Groups
		}
		if isNull(raw) {
			continue
		}
		rm, err := c.compileResource(rt, raw)
		if err != nil {
			return nil, err
		}
		m.types[rt] = rm
	}
	if len(m.types) == 0 {
		return nil, c.errf("", "the mapping has neither \"users\" nor \"groups\"")
	}
	if err := c.checkConsistency(m); err != nil {
		return nil, err
	}
	return m, nil
}

func (c *compiler) compileResource(rt string, raw json.RawMessage) (*resourceMapping, error) {
	section := sectionOf[rt]
	var fr fileResource
	if err := decodeStrict(raw, &fr); err != nil {
		return nil, c.wrap(section, err)
	}
	headers, err := c.compileHeaders(section+".headers", c.headers, fr.Headers)
	if err != nil {
		return nil, err
	}
	rm := &resourceMapping{typ: rt, calls: make(map[change.Event][]*call)}
	for _, name := range sortedKeys(fr.Events) {
		rule := section + ".events." + name
		ev := change.Event(name)
		if !validEvent(rt, ev) {
			return nil, c.errf(rule, "unknown event %q; %s have %s%s", name, section, strings.Join(change.Strings(eventsOf[rt]), ", "), eventHint(rt, ev))
		}
		if isNull(fr.Events[name]) {
			continue
		}
		flow, err := c.compileFlow(rt, ev, rule, fr.Events[name], headers)
		if err != nil {
			return nil, err
		}
		rm.calls[ev] = flow
	}
	if !isNull(fr.Lookup) {
		if rm.lookup, err = c.compileCall(rt, lookupCall, section+".lookup", fr.Lookup, headers); err != nil {
			return nil, err
		}
	}
	if !isNull(fr.Roles) {
		if rt != scim.GroupType {
			return nil, c.errf(section+".roles", "roles are what groups stand for: write them as groups.roles")
		}
		if rm.roles, err = c.compileRoles(section+".roles", fr.Roles, headers); err != nil {
			return nil, err
		}
	}
	if !isNull(fr.List) {
		if rm.list, err = c.compileCall(rt, listCall, section+".list", fr.List, headers); err != nil {
			return nil, err
		}
		if err := c.checkListRead(rm); err != nil {
			return nil, err
		}
	}
	if !isNull(fr.ListMembers) {
		if rt != scim.GroupType {
			return nil, c.errf(section+".list_members", "members are listed per group: write it as groups.list_members")
		}
		if rm.listMembers, err = c.compileCall(rt, listMembersCall, section+".list_members", fr.ListMembers, headers); err != nil {
			return nil, err
		}
	}
	if !isNull(fr.CreateBatch) {
		if rm.batch, err = c.compileBatch(rt, section+".create_batch", fr.CreateBatch, headers); err != nil {
			return nil, err
		}
		if err := c.checkBatch(rm, section); err != nil {
			return nil, err
		}
	}
	return rm, nil
}

func eventHint(rt string, ev change.Event) string {
	switch {
	case rt == scim.GroupType && ev == change.Rename:
		return " (a rename is an update of displayName: map it under \"update\")"
	case rt == scim.UserType && (ev == change.AddMembers || ev == change.RemoveMembers):
		return " (memberships are events of groups)"
	case rt == scim.GroupType && (ev == change.Deactivate || ev == change.Reactivate):
		return " (groups have no active attribute)"
	}
	return ""
}

func validEvent(rt string, ev change.Event) bool { return slices.Contains(eventsOf[rt], ev) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// compileHeaders validates header names and values and resolves the values' placeholders
// once. Messages never quote a resolved value: it is usually a secret.
func (c *compiler) compileHeaders(rule string, base http.Header, in map[string]string) (http.Header, error) {
	h := base.Clone()
	if h == nil {
		h = make(http.Header)
	}
	for _, name := range sortedKeys(in) {
		hr := fmt.Sprintf("%s[%q]", rule, name)
		if !validHeaderName(name) {
			return nil, c.errf(hr, "%q is not a valid header name", name)
		}
		v, err := c.resolve(in[name])
		if err != nil {
			return nil, c.errf(hr, "resolving the value: %v", err)
		}
		if !validHeaderValue(v) {
			return nil, c.errf(hr, "the value (after placeholders were resolved) holds a control character such as a line break")
		}
		if v == "" {
			h.Del(name) // an empty value removes a header set at an outer level
			continue
		}
		h.Set(name, v)
	}
	return h, nil
}

// validHeaderName checks the RFC 9110 token syntax.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// validHeaderValue rejects control characters other than tab: a line break in a resolved
// secret would otherwise split the request's headers.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// compileGJSONPath checks a response path (where a native id is). gjson paths come from
// the mapping only, never from a client, so the full syntax (items.0.id, items.#(login=="x").id)
// is allowed; only shapes that can never match are refused.
func compileGJSONPath(p string) error {
	switch {
	case p == "":
		return errors.New("the path is empty")
	case len(p) > maxGJSONPath:
		return fmt.Errorf("the path is longer than %d bytes", maxGJSONPath)
	case strings.HasPrefix(p, "."), strings.HasSuffix(p, ".") && !strings.HasSuffix(p, `\.`), strings.Contains(p, ".."):
		return fmt.Errorf("%q has an empty component", p)
	case strings.ContainsAny(p, "\x00\n\r\t "):
		return fmt.Errorf("%q holds white space or control characters", p)
	case strings.HasSuffix(p, "|") && !strings.HasSuffix(p, `\|`):
		return fmt.Errorf("%q has an empty component after its last \"|\"", p)
	}
	return checkGJSONBrackets(p)
}

// checkGJSONBrackets refuses a path whose query ("#(...)"), multipath ("[a,b]") or
// object ("{a,b}") is left open: gjson matches nothing for it, so every answer would
// look like one without the value, at every call instead of once at load. Quotes inside
// them count (a query's "a)" holds no bracket); a "(" or "[" inside a key is literal.
func checkGJSONBrackets(p string) error {
	var open []byte // the closing brackets awaited, innermost last
	quoted, start := false, true
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\':
			i++
			start = false
			continue
		case quoted:
			quoted = c != '"'
			continue
		case len(open) > 0 && c == '"':
			quoted = true
		case c == '#' && i+1 < len(p) && p[i+1] == '(':
			open = append(open, ')')
			i++
		case (start || len(open) > 0) && (c == '[' || c == '{' || (c == '(' && len(open) > 0)):
			open = append(open, map[byte]byte{'[': ']', '{': '}', '(': ')'}[c])
		case len(open) > 0 && c == open[len(open)-1]:
			open = open[:len(open)-1]
		}
		start = c == '.' || c == '|' || (len(open) > 0 && c == ',')
	}
	if quoted || len(open) > 0 {
		return fmt.Errorf("%q leaves a query \"#(\", a \"[\" or a \"{\" open (or a quote in it): gjson would match nothing", p)
	}
	return nil
}

// compileNativePath turns a native body path as written ("person.first", "a\.b" for a key
// holding a dot) into an sjson path built per component with gjson.Escape, so that no
// character of a key acts as a wildcard, modifier or array index.
func compileNativePath(p string) (string, []string, error) {
	if p == "" {
		return "", nil, errors.New("the native path is empty")
	}
	if len(p) > maxGJSONPath {
		return "", nil, fmt.Errorf("the native path is longer than %d bytes", maxGJSONPath)
	}
	comps := splitNativePath(p)
	parts := make([]string, len(comps))
	for i, comp := range comps {
		if comp == "" {
			return "", nil, fmt.Errorf("the native path %q has an empty component", p)
		}
		if !validJSONKey(comp) {
			return "", nil, fmt.Errorf("the native path %q holds a control character", p)
		}
		parts[i] = escapeComponent(comp)
	}
	return strings.Join(parts, "."), comps, nil
}

// splitNativePath splits on "." except where written "\.".
func splitNativePath(p string) []string {
	var comps []string
	var cur strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '\\' && i+1 < len(p) && p[i+1] == '.':
			cur.WriteByte('.')
			i++
		case p[i] == '.':
			comps = append(comps, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(p[i])
		}
	}
	return append(comps, cur.String())
}

// escapeComponent makes one key literal for sjson: gjson.Escape for the special
// characters, and a ":" prefix for keys that sjson would read as an array index ("0",
// "-1") or that start with ":".
func escapeComponent(comp string) string {
	if isIndexLike(comp) || strings.HasPrefix(comp, ":") {
		return ":" + gjson.Escape(comp)
	}
	return gjson.Escape(comp)
}

func isIndexLike(s string) bool {
	if s == "-1" {
		return true
	}
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

func validJSONKey(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' {
			return false
		}
	}
	return true
}
