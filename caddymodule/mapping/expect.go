package mapping

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/scimgate/scimgate/caddymodule/legacy"
)

// fileExpect is what an answer must look like, as written in the mapping: file-wide under
// "expect", and per call, where each key given replaces the file's.
type fileExpect struct {
	Status   []int      `json:"status"`
	Body     string     `json:"body"`
	Has      []string   `json:"has"`
	Equals   *fileEqual `json:"equals"`
	Errors   *fileShape `json:"errors"`
	NotFound *fileShape `json:"not_found"`
}

// fileShape is the shape of an error answer (the app's own errors, its not-found).
type fileShape struct {
	Body   string     `json:"body"`
	Has    []string   `json:"has"`
	Equals *fileEqual `json:"equals"`
}

// fileEqual maps gjson paths to the JSON value the answer must hold there, or to a list of
// values any of which will do.
type fileEqual map[string]json.RawMessage

// compileExpect turns the file's expectations (base, then the call's) into the client's.
// A create or lookup that reads an id also expects that id in the answer.
func (c *compiler) compileExpect(rule string, base, own *fileExpect, idPath string) (*legacy.Expect, error) {
	var fe fileExpect
	for _, e := range []*fileExpect{base, own} {
		if e == nil {
			continue
		}
		if e.Status != nil {
			fe.Status = e.Status
		}
		if e.Body != "" {
			fe.Body = e.Body
		}
		if e.Has != nil {
			fe.Has = e.Has
		}
		if e.Equals != nil {
			fe.Equals = e.Equals
		}
		if e.Errors != nil {
			fe.Errors = e.Errors
		}
		if e.NotFound != nil {
			fe.NotFound = e.NotFound
		}
	}
	x := &legacy.Expect{Status: fe.Status}
	for _, s := range fe.Status {
		if s < 200 || s > 299 {
			return nil, c.errf(rule+".status", "%d is not a success status (200-299)", s)
		}
	}
	var err error
	if x.Success, err = c.compileShape(rule, fe.Body, fe.Has, fe.Equals); err != nil {
		return nil, err
	}
	if idPath != "" && !slices.Contains(x.Success.Has, idPath) {
		x.Success.Has = append(slices.Clone(x.Success.Has), idPath)
	}
	if fe.Errors != nil {
		if x.Errors, err = c.compileShape(rule+".errors", fe.Errors.Body, fe.Errors.Has, fe.Errors.Equals); err != nil {
			return nil, err
		}
	}
	if fe.NotFound != nil {
		nf, err := c.compileShape(rule+".not_found", fe.NotFound.Body, fe.NotFound.Has, fe.NotFound.Equals)
		if err != nil {
			return nil, err
		}
		x.NotFound = &nf
	}
	return x, nil
}

var bodyRules = []legacy.Body{legacy.BodyAny, legacy.BodyJSON, legacy.BodyJSONOrEmpty, legacy.BodyEmpty}

func (c *compiler) compileShape(rule, body string, has []string, equals *fileEqual) (legacy.Shape, error) {
	sh := legacy.Shape{Body: legacy.Body(body)}
	if body != "" && !slices.Contains(bodyRules, sh.Body) {
		names := make([]string, len(bodyRules))
		for i, b := range bodyRules {
			names[i] = fmt.Sprintf("%q", b)
		}
		return sh, c.errf(rule+".body", "%q is not one of %s", body, strings.Join(names, ", "))
	}
	for _, p := range has {
		if err := compileGJSONPath(p); err != nil {
			return sh, c.wrap(rule+".has", err)
		}
	}
	sh.Has = has
	if sh.Body == legacy.BodyEmpty && (len(has) > 0 || (equals != nil && len(*equals) > 0)) {
		return sh, c.errf(rule, "an empty answer cannot hold \"has\" or \"equals\"")
	}
	if equals == nil {
		return sh, nil
	}
	sh.Equals = make(map[string][]json.RawMessage, len(*equals))
	for p, raw := range *equals {
		if err := compileGJSONPath(p); err != nil {
			return sh, c.wrap(fmt.Sprintf("%s.equals[%q]", rule, p), err)
		}
		var vals []json.RawMessage
		if err := json.Unmarshal(raw, &vals); err != nil {
			vals = []json.RawMessage{raw} // one value rather than a list of them
		}
		if len(vals) == 0 {
			return sh, c.errf(fmt.Sprintf("%s.equals[%q]", rule, p), "an empty list allows no value")
		}
		sh.Equals[p] = vals
	}
	return sh, nil
}
