package provision

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
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
	diffInto(&out, "", "", before, after)
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// diffInto walks two objects under prefix, an attribute path, whose members follow it after
// sep: an extension's attributes follow its URN after a colon (urn:...:User:manager), every
// sub-attribute follows its attribute after a dot (urn:...:User:manager.value), as RFC 7644
// §3.10 writes paths.
func diffInto(out *[]journal.Change, prefix, sep string, before, after map[string]any) {
	join := func(k string) string { return prefix + sep + k }
	childSep := func(k string) string {
		if prefix == "" && scim.IsURN(k) {
			return ":"
		}
		return "."
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
			diffInto(out, join(k), childSep(k), bm, am)
		case !had:
			*out = append(*out, changeOf(join(k), "add", av))
		case !scim.EqualValues(av, bv):
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
			diffInto(out, join(k), childSep(k), bm, map[string]any{})
			continue
		}
		*out = append(*out, changeOf(join(k), "remove", nil))
	}
}

func changeOf(path, op string, v any) journal.Change {
	c := journal.Change{Path: path, Op: op}
	if v != nil {
		if data, err := scim.MarshalJSON(v, true); err == nil {
			c.Value = data
		}
	}
	return c
}

// maxListedMembers is how many member ids a journal record lists in one change; a larger
// change is summarised (its count, a hash of every id, the first ids) so that its record
// always fits the journal's size limit.
const maxListedMembers = 5000

// memberChanges reports member edges added and removed as two changes of path members.
func memberChanges(added, removed []string) []journal.Change {
	var out []journal.Change
	if len(added) > 0 {
		out = append(out, changeOf("members", "add", memberList(added)))
	}
	if len(removed) > 0 {
		out = append(out, changeOf("members", "remove", memberList(removed)))
	}
	return out
}

// memberSummary stands for a list of member ids too long to record whole: how many, the
// SHA-256 of the ids sorted and joined with newlines (an auditor holding the list can
// check it), and the first ids in that order.
type memberSummary struct {
	Count  int      `json:"count"`
	SHA256 string   `json:"sha256"`
	First  []string `json:"first"`
}

// memberList is ids as a change value: the list itself, or its summary when it is long.
func memberList(ids []string) any {
	if len(ids) <= maxListedMembers {
		return ids
	}
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	h := sha256.New()
	for i, id := range sorted {
		if i > 0 {
			h.Write([]byte{'\n'})
		}
		h.Write([]byte(id))
	}
	return memberSummary{Count: len(ids), SHA256: hex.EncodeToString(h.Sum(nil)), First: sorted[:100]}
}

// listIDs joins ids for a reason in the journal, naming at most 20 of them.
func listIDs(ids []string) string {
	if len(ids) <= 20 {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ids[:20], ", "), len(ids)-20)
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
