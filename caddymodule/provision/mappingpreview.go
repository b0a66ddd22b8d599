package provision

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/mapping"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// MappingImpact is what a proposed mapping would send the app differently from the mapping
// in force: every user and group of the directory has the calls of each of its events
// built by both (nothing is sent), and every kind of difference is counted once per
// resource, with the first resource that shows it as a sample.
type MappingImpact struct {
	Target string `json:"target"`
	Users  int    `json:"users"`
	Groups int    `json:"groups"`
	// Differing is how many resources have at least one call that differs.
	Differing int `json:"differing"`
	// Counts maps a kind of difference ("update: body field person.dept changed",
	// "create: path", "deactivate: calls added", ...) to how many resources show it.
	Counts  map[string]int           `json:"counts"`
	Samples map[string]MappingSample `json:"samples"`
}

// MappingSample is one resource showing a kind of difference: the calls of the event
// under both mappings (method, path and body; headers are never shown, they carry
// secrets).
type MappingSample struct {
	Type    string     `json:"type"`
	ID      string     `json:"id"`
	Name    string     `json:"name"`
	Event   string     `json:"event"`
	Current []CallView `json:"current"`
	New     []CallView `json:"new"`
}

// CallView is a native call as a preview shows it.
type CallView struct {
	Method string          `json:"method,omitempty"`
	Path   string          `json:"path,omitempty"`
	Body   json.RawMessage `json:"body,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// previewEvents are the events whose calls a mapping preview builds for each resource.
var previewEvents = map[string][]change.Event{
	scim.UserType:  {change.Create, change.Update, change.Deactivate, change.Reactivate, change.Delete},
	scim.GroupType: {change.Create, change.Update, change.AddMembers, change.Delete},
}

// placeholderNativeID stands for the native id of a resource the app has no account for,
// so that the calls that need one can still be compared.
const placeholderNativeID = "<native id>"

// MappingImpact builds, for every user and group of the directory, the calls of each event
// under the mapping in force and under proposed, and reports the differences. It reads the
// store in pages of short read transactions and calls no app.
func (e *Engine) MappingImpact(proposed *mapping.Mapping, pageSize int) (*MappingImpact, error) {
	if e.target == nil {
		return nil, errors.New("provision: the gateway has no target, so no mapping in force to compare with")
	}
	if proposed == nil {
		return nil, errors.New("provision: no proposed mapping to preview")
	}
	if pageSize <= 0 {
		pageSize = 512
	}
	im := &MappingImpact{Target: e.target.Name, Counts: map[string]int{}, Samples: map[string]MappingSample{}}
	for _, typ := range []string{scim.UserType, scim.GroupType} {
		start := ""
		for {
			next, err := e.mappingPage(typ, start, pageSize, proposed, im)
			if err != nil {
				return nil, err
			}
			if next == "" {
				break
			}
			start = next
		}
	}
	return im, nil
}

// mappingPage compares the calls of up to size records of typ from start, in one read
// transaction; it returns the id to resume from, "" after the last page.
func (e *Engine) mappingPage(typ, start string, size int, proposed *mapping.Mapping, im *MappingImpact) (next string, err error) {
	n := 0
	err = e.store.View(func(tx *store.Tx) error {
		return tx.ScanFrom(typ, start, func(rec *store.Record) (bool, error) {
			if n == size {
				next = rec.ID
				return false, nil
			}
			n++
			if typ == scim.UserType {
				im.Users++
			} else {
				im.Groups++
			}
			return true, e.compareResource(tx, rec, proposed, im)
		})
	})
	return next, err
}

// compareResource builds the calls of every event of one resource under both mappings.
func (e *Engine) compareResource(tx *store.Tx, rec *store.Record, proposed *mapping.Mapping, im *MappingImpact) error {
	doc, err := DecodeDoc(rec)
	if err != nil {
		return fmt.Errorf("previewing %s %s: %w", rec.Type, rec.ID, err)
	}
	nativeID, err := tx.NativeID(e.target.mapKey(rec.Type), rec.ID)
	if errors.Is(err, store.ErrNotFound) {
		nativeID = placeholderNativeID
	} else if err != nil {
		return err
	}
	members, err := e.previewMembers(tx, rec)
	if err != nil {
		return err
	}
	nativeIDOf := func(scimID string) (string, mapping.RefState) {
		typ, err := tx.TypeOf(scimID)
		if err != nil {
			return "", mapping.RefGone
		}
		id, err := tx.NativeID(e.target.mapKey(typ), scimID)
		if err != nil {
			return "", mapping.RefPending
		}
		return id, mapping.RefLinked
	}
	kinds := map[string]bool{}
	for _, ev := range previewEvents[rec.Type] {
		in := previewInput(rec.Type, ev, withID(doc, rec.ID), nativeID, members, nativeIDOf)
		current, now := buildCalls(e.target.Mapping, in), buildCalls(proposed, in)
		for _, k := range callDifferences(current, now) {
			kind := string(ev) + ": " + k
			if kinds[kind] {
				continue
			}
			kinds[kind] = true
			im.Counts[kind]++
			if _, ok := im.Samples[kind]; !ok {
				im.Samples[kind] = MappingSample{Type: rec.Type, ID: rec.ID, Name: displayOf(rec), Event: string(ev), Current: current, New: now}
			}
		}
	}
	if len(kinds) > 0 {
		im.Differing++
	}
	return nil
}

// previewMembers lists a group's members with their native ids (a placeholder for a
// member the app has no account for).
func (e *Engine) previewMembers(tx *store.Tx, rec *store.Record) ([]mapping.Member, error) {
	if rec.Type != scim.GroupType {
		return nil, nil
	}
	var out []mapping.Member
	err := tx.Members(rec.ID, func(m store.Member) error {
		id, err := tx.NativeID(e.target.mapKey(m.Type), m.ID)
		if err != nil {
			id = placeholderNativeID
		}
		out = append(out, mapping.Member{SCIMID: m.ID, NativeID: id, Type: m.Type})
		return nil
	})
	return out, err
}

// previewInput is the mapping input of one event of a resource as it stands: a create of
// it, a full update (every attribute changed), its deactivation and reactivation, its
// members added, its deletion.
func previewInput(typ string, ev change.Event, doc scim.Resource, nativeID string, members []mapping.Member, nativeIDOf func(string) (string, mapping.RefState)) mapping.Input {
	if typ == scim.UserType {
		doc = WithActive(doc) // as shapeForApp sends it
	}
	in := mapping.Input{ResourceType: typ, Event: ev, Resource: doc, Previous: doc, NativeID: nativeID, NativeIDOf: nativeIDOf}
	switch ev {
	case change.Create:
		in.Previous, in.NativeID = nil, ""
	case change.Update:
		in.Changed = slices.Sorted(maps.Keys(doc))
	case change.Deactivate, change.Reactivate:
		on, off := scim.CloneResource(doc), scim.CloneResource(doc)
		on["active"], off["active"] = true, false
		in.Previous, in.Resource = on, off
		if ev == change.Reactivate {
			in.Previous, in.Resource = off, on
		}
		in.Changed = []string{"active"}
	case change.AddMembers:
		in.Members = members
	}
	return in
}

// buildCalls builds an event's calls as a preview shows them; an error is one call view.
func buildCalls(m *mapping.Mapping, in mapping.Input) []CallView {
	if !m.Has(in.ResourceType, in.Event) {
		return nil
	}
	reqs, err := m.Requests(in)
	if err != nil {
		return []CallView{{Error: err.Error()}}
	}
	out := make([]CallView, len(reqs))
	for i, r := range reqs {
		out[i] = CallView{Method: r.Method, Path: r.Path, Body: r.Body}
	}
	return out
}

// callDifferences names how two call lists differ: "calls added", "calls removed",
// "error", "method", "path", "body", or "body field <key> added|removed|changed" for
// JSON object bodies (top-level keys, sorted).
func callDifferences(a, b []CallView) []string {
	var out []string
	add := func(k string) {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	switch {
	case len(b) > len(a):
		add("calls added")
	case len(b) < len(a):
		add("calls removed")
	}
	for i := range min(len(a), len(b)) {
		x, y := a[i], b[i]
		if (x.Error != "") != (y.Error != "") {
			add("error")
			continue
		}
		if x.Method != y.Method {
			add("method")
		}
		if x.Path != y.Path {
			add("path")
		}
		for _, k := range bodyDifferences(x.Body, y.Body) {
			add(k)
		}
	}
	slices.Sort(out)
	return out
}

func bodyDifferences(a, b []byte) []string {
	if bytes.Equal(a, b) {
		return nil
	}
	var x, y map[string]json.RawMessage
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil || x == nil || y == nil {
		return []string{"body"}
	}
	var out []string
	for k, v := range x {
		w, ok := y[k]
		switch {
		case !ok:
			out = append(out, "body field "+k+" removed")
		case !jsonEqual(v, w):
			out = append(out, "body field "+k+" changed")
		}
	}
	for k := range y {
		if _, ok := x[k]; !ok {
			out = append(out, "body field "+k+" added")
		}
	}
	return out
}

// jsonEqual compares two JSON values by meaning (key order and spacing aside).
func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return bytes.Equal(ja, jb)
}
