package mapping

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// maxFlowCalls bounds the calls of one event's flow.
const maxFlowCalls = 16

// A flow is an event's calls in order: one call (the object form), or a list of them (the
// array form), each with an optional condition ("when"). The gateway makes them one after
// another under one intent and journals every one. In a create's flow, the calls after the
// one whose answer gives the native id ("id") may use it ({id}, $id): create an account,
// then suspend it.

// compileFlow compiles an event's value: a call object or an array of them.
func (c *compiler) compileFlow(rt string, ev change.Event, rule string, raw json.RawMessage, headers http.Header) ([]*call, error) {
	c.flowHasID = false
	defer func() { c.flowHasID = false }()
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '[' {
		cl, err := c.compileCall(rt, ev, rule, raw, headers)
		if err != nil {
			return nil, err
		}
		if err := c.checkAnswerRefs(cl, 0); err != nil {
			return nil, err
		}
		return []*call{cl}, nil
	}
	var items []json.RawMessage
	if err := decodeStrict(raw, &items); err != nil {
		return nil, c.wrap(rule, err)
	}
	switch {
	case len(items) == 0:
		return nil, c.errf(rule, "an empty list of calls: write null to map no call")
	case len(items) > maxFlowCalls:
		return nil, c.errf(rule, "%d calls; a flow has at most %d", len(items), maxFlowCalls)
	}
	flow := make([]*call, 0, len(items))
	for i, item := range items {
		cl, err := c.compileCall(rt, ev, fmt.Sprintf("%s[%d]", rule, i), item, headers)
		if err != nil {
			return nil, err
		}
		if err := c.checkAnswerRefs(cl, i); err != nil {
			return nil, err
		}
		if cl.members != membersNone && len(items) > 1 {
			return nil, c.errf(cl.rule, "member calls (\"members\") cannot be part of a flow of several calls")
		}
		if cl.id.IsSet() {
			if c.flowHasID {
				return nil, c.errf(cl.rule+".id", "an earlier call of the flow already gives the native id")
			}
			c.flowHasID = true
		}
		flow = append(flow, cl)
	}
	return flow, nil
}

// fileWhen is a call's condition as written: every part given must hold.
type fileWhen struct {
	Changed []string                   `json:"changed"`
	Present []string                   `json:"present"`
	Absent  []string                   `json:"absent"`
	Equals  map[string]json.RawMessage `json:"equals"`
}

// condition is a compiled "when": the call is made only when it holds for the change.
type condition struct {
	changed []*source // one of them changed (on a create: has a value)
	present []*source // each has a non-empty value
	absent  []*source // none has a value
	equals  []equalsCond
}

type equalsCond struct {
	src  *source
	want any // the JSON value, decoded
}

func (c *compiler) compileWhen(rt, rule string, fw *fileWhen) (*condition, error) {
	if fw == nil {
		return nil, nil
	}
	cond := &condition{}
	for _, p := range fw.Changed {
		src, err := compileSource(rt, p)
		if err != nil || src.reserved != "" {
			return nil, c.errf(rule+".changed", "%q is not a SCIM attribute path", p)
		}
		cond.changed = append(cond.changed, src)
	}
	for _, list := range []struct {
		name  string
		paths []string
		into  *[]*source
	}{{"present", fw.Present, &cond.present}, {"absent", fw.Absent, &cond.absent}} {
		for _, p := range list.paths {
			src, err := compileSource(rt, p)
			if err != nil {
				return nil, c.wrap(rule+"."+list.name, err)
			}
			*list.into = append(*list.into, src)
		}
	}
	for _, p := range sortedKeys(fw.Equals) {
		src, err := compileSource(rt, p)
		if err != nil {
			return nil, c.wrap(fmt.Sprintf("%s.equals[%q]", rule, p), err)
		}
		var want any
		if err := json.Unmarshal(fw.Equals[p], &want); err != nil {
			return nil, c.errf(fmt.Sprintf("%s.equals[%q]", rule, p), "not a JSON value")
		}
		cond.equals = append(cond.equals, equalsCond{src: src, want: want})
	}
	if len(cond.changed)+len(cond.present)+len(cond.absent)+len(cond.equals) == 0 {
		return nil, c.errf(rule, "an empty condition: give changed, present, absent or equals")
	}
	return cond, nil
}

// holds reports whether the condition holds for the change ev describes.
func (cond *condition) holds(ev *evalCtx) (bool, error) {
	if cond == nil {
		return true, nil
	}
	if len(cond.changed) > 0 {
		ok := false
		for _, src := range cond.changed {
			if ev.in.Event == change.Create {
				// A create changes every attribute it has.
				v, found, err := src.resolve(ev)
				if err != nil {
					return false, err
				}
				ok = ok || !isEmpty(v, found)
				continue
			}
			for _, c := range ev.in.Changed {
				ok = ok || keysOverlap(src.key, changedKey(ev.in.ResourceType, c))
			}
		}
		if !ok {
			return false, nil
		}
	}
	for _, s := range cond.present {
		v, found, err := s.resolve(ev)
		if err != nil {
			return false, err
		}
		if isEmpty(v, found) {
			return false, nil
		}
	}
	for _, s := range cond.absent {
		v, found, err := s.resolve(ev)
		if err != nil {
			return false, err
		}
		if !isEmpty(v, found) {
			return false, nil
		}
	}
	for _, e := range cond.equals {
		v, found, err := e.src.resolve(ev)
		if err != nil {
			return false, err
		}
		if !found || !sameValue(v, e.want) {
			return false, nil
		}
	}
	return true, nil
}

// sameValue compares a resource's value with a condition's, the way SCIM reads them:
// Entra's "True"/"False" are booleans, and numbers compare by value.
func sameValue(got, want any) bool {
	if b, ok := want.(bool); ok {
		g, ok := scim.Bool(got)
		return ok && g == b
	}
	if ws, ok := want.(string); ok {
		gs, ok := got.(string)
		return ok && gs == ws
	}
	norm := func(v any) any {
		data, err := json.Marshal(v)
		if err != nil {
			return v
		}
		var out any
		_ = json.Unmarshal(data, &out)
		return out
	}
	return reflect.DeepEqual(norm(got), norm(want))
}

// mentions reports whether the condition reads the attribute key (canonical).
func (cond *condition) mentions(key string) bool {
	if cond == nil {
		return false
	}
	for _, list := range [][]*source{cond.changed, cond.present, cond.absent} {
		for _, s := range list {
			if keysOverlap(s.key, key) {
				return true
			}
		}
	}
	for _, e := range cond.equals {
		if keysOverlap(e.src.key, key) {
			return true
		}
	}
	return false
}

// checkAnswerRefs checks that call number step of a flow reads only the answers of calls
// made before it.
func (c *compiler) checkAnswerRefs(cl *call, step int) error {
	for _, s := range cl.allSources() {
		if (s.reserved == srcAnswer || s.reserved == srcHeader) && s.step >= step {
			if step == 0 {
				return c.errf(cl.rule, "%s reads an answer, but no call of the flow is made before this one", s.text)
			}
			return c.errf(cl.rule, "%s reads the answer of call %d, which is not made before this one (call %d)", s.text, s.step, step)
		}
	}
	return nil
}

// allSources lists what the call reads: its path's placeholders, its body's sources and
// what their transforms read, and its condition.
func (cl *call) allSources() []*source {
	out := cl.path.sources()
	fields := slices.Clone(cl.fields)
	for _, hf := range cl.headerFields {
		fields = append(fields, hf.field)
	}
	for _, f := range fields {
		if f.src != nil {
			out = append(out, f.src)
		}
		for _, t := range f.transforms {
			out = append(out, t.sources...)
		}
	}
	return out
}
