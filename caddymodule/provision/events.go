package provision

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// semanticEvents names what a change means to an app: create, update, deactivate,
// reactivate, rename, add_members, remove_members, delete.
func semanticEvents(typ string, before, after scim.Resource, changes []journal.Change, added, removed int) []change.Event {
	var ev []change.Event
	switch {
	case before == nil:
		return []change.Event{change.Create}
	case after == nil:
		return []change.Event{change.Delete}
	}
	attrChanged := false
	for _, c := range changes {
		if c.Path != "members" {
			attrChanged = true
			break
		}
	}
	if attrChanged {
		ev = append(ev, change.Update)
	}
	if typ == scim.UserType {
		wasActive, isActive := activeOf(before), activeOf(after)
		switch {
		case wasActive && !isActive:
			ev = append(ev, change.Deactivate)
		case !wasActive && isActive:
			ev = append(ev, change.Reactivate)
		}
	}
	if typ == scim.GroupType && SubjectOf(typ, before) != SubjectOf(typ, after) {
		ev = append(ev, change.Rename)
	}
	if added > 0 {
		ev = append(ev, change.AddMembers)
	}
	if removed > 0 {
		ev = append(ev, change.RemoveMembers)
	}
	return ev
}

// nativeEvents are the events the mapping knows, in the order the calls are made: a
// rename is an update of the native record.
func nativeEvents(events []change.Event) []change.Event {
	var out []change.Event
	for _, e := range events {
		switch e {
		case change.Rename:
			if !change.Has(out, change.Update) && !change.Has(events, change.Update) {
				out = append(out, change.Update)
			}
		default:
			out = append(out, e)
		}
	}
	return out
}

// SubjectOf is the name auditors search by: a user's userName or a group's displayName.
func SubjectOf(typ string, doc scim.Resource) string {
	name := "userName"
	if typ == scim.GroupType {
		name = "displayName"
	}
	v, _ := scim.Get(doc, name)
	s, _ := v.(string)
	return s
}

// activeOf reads active; an absent attribute counts as active (RFC 7643 leaves it to the
// service provider, and Entra always sends it).
func activeOf(doc scim.Resource) bool {
	v, ok := scim.Get(doc, "active")
	if !ok {
		return true
	}
	b, ok := scim.Bool(v)
	return !ok || b
}

// diffChanges lists the attribute paths that differ between two documents, with their new
// values (objects are walked; arrays are compared and reported whole). The journal redacts
// sensitive values.
func diffChanges(before, after scim.Resource) []journal.Change {
	var out []journal.Change
	diffInto(&out, "", before, after)
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func diffInto(out *[]journal.Change, prefix string, before, after map[string]any) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		if scim.IsURN(prefix) {
			return prefix + ":" + k
		}
		return prefix + "." + k
	}
	for k, av := range after {
		if prefix == "" && (strings.EqualFold(k, "schemas") || k == "id") {
			continue
		}
		bk, had := scim.Key(before, k)
		var bv any
		if had {
			bv = before[bk]
		}
		am, aIsMap := av.(map[string]any)
		bm, bIsMap := bv.(map[string]any)
		switch {
		case aIsMap && (bIsMap || !had):
			diffInto(out, join(k), bm, am)
		case !had:
			*out = append(*out, changeOf(join(k), "add", av))
		case !reflect.DeepEqual(av, bv):
			*out = append(*out, changeOf(join(k), "replace", av))
		}
	}
	for k, bv := range before {
		if prefix == "" && (strings.EqualFold(k, "schemas") || k == "id") {
			continue
		}
		if _, has := scim.Key(after, k); has {
			continue
		}
		if bm, ok := bv.(map[string]any); ok {
			diffInto(out, join(k), bm, map[string]any{})
			continue
		}
		*out = append(*out, changeOf(join(k), "remove", nil))
	}
}

func changeOf(path, op string, v any) journal.Change {
	c := journal.Change{Path: path, Op: op}
	if v != nil {
		if data, err := json.Marshal(v); err == nil {
			c.Value = data
		}
	}
	return c
}

// memberChanges reports member edges added and removed as two changes of path members.
func memberChanges(added, removed []string) []journal.Change {
	var out []journal.Change
	if len(added) > 0 {
		out = append(out, changeOf("members", "add", added))
	}
	if len(removed) > 0 {
		out = append(out, changeOf("members", "remove", removed))
	}
	return out
}

// changedPathsOf lists the top-level attributes (extension attributes as URN:attr) that
// changes touch.
func changedPathsOf(changes []journal.Change) []string {
	seen := map[string]bool{}
	for _, c := range changes {
		top := c.Path
		if !scim.IsURN(top) {
			top = strings.SplitN(top, ".", 2)[0]
		}
		seen[top] = true
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// attributeNames lists a resource's top-level attributes (what an update that sends
// everything changed).
func attributeNames(doc scim.Resource) []string {
	out := make([]string, 0, len(doc))
	for k := range doc {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// attributesDiffer reports whether two documents differ in anything but members.
func attributesDiffer(before, after scim.Resource) bool {
	for _, c := range diffChanges(before, after) {
		if c.Path != "members" {
			return true
		}
	}
	return false
}
