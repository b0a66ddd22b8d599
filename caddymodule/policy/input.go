package policy

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Input is what the gateway knows about one write request for one target; it becomes the
// policy's `input` document (field names in the contract are the snake_case JSON names).
type Input struct {
	Action       string         // create, replace, patch or delete
	ResourceType string         // User or Group
	Events       []string       // semantic events: create, update, deactivate, ...
	Client       string         // name of the bearer token that made the request
	Target       string         // legacy-app target name, "" when none is configured
	NativeID     string         // the app's id for the resource, "" when it has none
	Resource     map[string]any // the resource after the change, nil on delete
	Previous     map[string]any // the resource before the change, nil on create
	Changed      []string       // attribute paths that changed
	Members      Members        // membership changes, empty when none
	Stats        Stats          // recent counts of changes let through to the target
}

// Members lists the membership changes of a group write.
type Members struct {
	Add, Remove []Member
}

// Member is one member being added or removed.
type Member struct {
	ID      string // SCIM id
	Type    string // User, Group or ""
	Display string // userName of a user, displayName of a group, or ""
}

// Stats holds recent counts the mass-change guardrails need.
type Stats struct {
	// LastHour maps an event name to how many changes with that event the gateway let
	// through to this target in the last 60 minutes, not counting this request. Missing
	// events are sent as 0 so policies need no defaulting.
	LastHour map[string]int64
}

// statsEvents are the event keys always present in input.stats.last_hour.
var statsEvents = []string{"create", "update", "deactivate", "reactivate", "delete", "rename", "add_members", "remove_members"}

// astValue converts the input straight to OPA's AST, which is what evaluation works on;
// going through encoding/json (or rego.EvalInput's generic conversion) would marshal and
// re-parse the whole resource on every request.
//
// The document is lazy (ast.LazyObject): a value is converted only when the policy reads
// it, so a guardrail looking at three attributes does not pay for the other fifty. Builtins
// that need the whole document as JSON (json.marshal(input)) get the native map, so it
// must hold plain Go JSON values only, never ast values.
func (in *Input) astValue() (ast.Value, error) {
	resource, err := nativeResource(in.Resource)
	if err != nil {
		return nil, fmt.Errorf("%w: resource: %w", ErrInput, err)
	}
	previous, err := nativeResource(in.Previous)
	if err != nil {
		return nil, fmt.Errorf("%w: previous: %w", ErrInput, err)
	}
	return ast.LazyObject(in.native(resource, previous)), nil
}

// native is the input document as plain Go JSON values, resource and previous already
// checked by nativeResource.
func (in *Input) native(resource, previous any) map[string]any {
	return map[string]any{
		"action":        in.Action,
		"resource_type": in.ResourceType,
		"events":        nonNil(in.Events),
		"client":        in.Client,
		"target":        in.Target,
		"native_id":     in.NativeID,
		"resource":      resource,
		"previous":      previous,
		"changed":       nonNil(in.Changed),
		"members": map[string]any{
			"add":    memberList(in.Members.Add),
			"remove": memberList(in.Members.Remove),
		},
		"stats": in.Stats.native(),
	}
}

// nativeResource prepares a decoded SCIM resource for the lazy input document. Lazy
// conversion cannot report errors (it panics), so the resource is first checked to hold
// only values ast.InterfaceToValue accepts; json.Number (the gateway decodes with
// UseNumber) stays exact, large integers included. Other Go types go through OPA's eager
// conversion, which reports what it cannot convert, and back to plain JSON values.
func nativeResource(r map[string]any) (any, error) {
	if r == nil {
		return nil, nil
	}
	if jsonOnly(r) {
		return r, nil
	}
	v, err := ast.InterfaceToValue(r)
	if err != nil {
		return nil, err
	}
	return ast.JSON(v)
}

// jsonOnly reports whether v holds only values ast.InterfaceToValue converts without
// error. It allocates nothing, so checking costs far less than converting.
func jsonOnly(v any) bool {
	switch x := v.(type) {
	case nil, bool, string, int, int64:
		return true
	case json.Number:
		_, err := ast.NumberChecked(string(x)) // "1e999999999" is valid JSON but no valid Number
		return err == nil
	case float64:
		return !math.IsInf(x, 0) && !math.IsNaN(x)
	case []any:
		for _, e := range x {
			if !jsonOnly(e) {
				return false
			}
		}
		return true
	case map[string]any:
		for _, e := range x {
			if !jsonOnly(e) {
				return false
			}
		}
		return true
	}
	return false
}

func (s Stats) native() map[string]any {
	counts := make(map[string]any, max(len(statsEvents), len(s.LastHour)))
	for _, k := range statsEvents {
		counts[k] = s.LastHour[k]
	}
	// Counts for events the contract does not (yet) list are passed through too, so a newer
	// gateway can feed an older engine without losing data.
	for k, n := range s.LastHour {
		counts[k] = n
	}
	return map[string]any{"window": "1h", "last_hour": counts}
}

func memberList(ms []Member) []any {
	list := make([]any, len(ms))
	for i, m := range ms {
		list[i] = map[string]string{"id": m.ID, "type": m.Type, "display": m.Display}
	}
	return list
}

// nonNil keeps an absent list an empty array in JSON too (a nil slice marshals as null).
func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

// Prepared is an Input converted for evaluation once, for inputs that several policies
// decide in turn (a preview decides each resource under the policy in force and under the
// proposed one): Engine.DecidePrepared evaluates it without converting it again. Unlike
// Decide's lazy conversion, Prepare converts the whole input at once, and a Resource that
// is the same map as Previous (a re-sync) is converted once for both.
type Prepared struct {
	value ast.Value
	// from is the input converted, without its resources, and rest its converted document
	// without resource and previous: PrepareLike reuses rest when only those differ.
	from Input
	rest ast.Object
}

// Prepare converts in for DecidePrepared. The Prepared value does not refer to in's maps.
func (in *Input) Prepare() (*Prepared, error) {
	return in.PrepareLike(nil)
}

// PrepareLike is Prepare for inputs that differ from a previous one in little but their
// resources (a preview's users: the same action, events, client, target and counts): when
// in's fields other than Resource, Previous and NativeID equal those prev was prepared
// from, their converted values are shared with prev instead of converted again (they are
// never modified, so concurrent evaluations may share them). prev may be nil.
func (in *Input) PrepareLike(prev *Prepared) (*Prepared, error) {
	resource, err := preparedResource(in.Resource)
	if err != nil {
		return nil, fmt.Errorf("%w: resource: %w", ErrInput, err)
	}
	previous := resource
	if !sameMap(in.Resource, in.Previous) {
		if previous, err = preparedResource(in.Previous); err != nil {
			return nil, fmt.Errorf("%w: previous: %w", ErrInput, err)
		}
	}
	p := &Prepared{from: *in}
	p.from.Resource, p.from.Previous, p.from.NativeID = nil, nil, ""
	if prev != nil && prev.from.sameRest(&p.from) {
		p.from, p.rest = prev.from, prev.rest
	} else {
		doc := in.native(nil, nil)
		delete(doc, "resource")
		delete(doc, "previous")
		delete(doc, "native_id")
		v, err := ast.InterfaceToValue(doc)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInput, err)
		}
		p.rest = v.(ast.Object)
	}
	obj := ast.NewObject()
	p.rest.Foreach(func(k, v *ast.Term) { obj.Insert(k, v) })
	obj.Insert(ast.StringTerm("native_id"), ast.StringTerm(in.NativeID))
	obj.Insert(ast.StringTerm("resource"), resource)
	obj.Insert(ast.StringTerm("previous"), previous)
	p.value = obj
	return p, nil
}

// sameRest reports whether a and b, stripped of their resources and native id, convert to
// the same document.
func (a *Input) sameRest(b *Input) bool {
	return a.Action == b.Action && a.ResourceType == b.ResourceType && a.Client == b.Client &&
		a.Target == b.Target && slices.Equal(a.Events, b.Events) && slices.Equal(a.Changed, b.Changed) &&
		slices.Equal(a.Members.Add, b.Members.Add) && slices.Equal(a.Members.Remove, b.Members.Remove) &&
		maps.Equal(a.Stats.LastHour, b.Stats.LastHour)
}

// preparedResource converts a resource eagerly, checked as nativeResource does.
func preparedResource(r map[string]any) (*ast.Term, error) {
	native, err := nativeResource(r)
	if err != nil {
		return nil, err
	}
	v, err := ast.InterfaceToValue(native)
	if err != nil {
		return nil, err
	}
	return ast.NewTerm(v), nil
}

// sameMap reports whether a and b are the same (non-nil) map.
func sameMap(a, b map[string]any) bool {
	return a != nil && b != nil && reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}
