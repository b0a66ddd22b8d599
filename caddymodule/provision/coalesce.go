package provision

import (
	"slices"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/outbox"
)

// Coalescing: the worker hands Deliver consecutive tasks of one resource (outbox.Worker
// groups them), and they are delivered as one change from the first task's "before" to the
// last one's "after": two updates are one call with the final values, a deactivation then a
// reactivation sends only what the final state needs, member adds to a group are one
// add_members event (batch calls where the mapping batches), and a create followed by a
// delete sends nothing. Each task's request still gets its own delivery record.

// coalesced is what a group of tasks amounts to.
type coalesced struct {
	task *outbox.Task // the merged task (the first one's number and request)
	none bool         // created and deleted before delivery: nothing to send
}

// coalesce merges consecutive tasks of one resource. One task is itself.
func coalesce(tasks []*outbox.Task) (coalesced, error) {
	first, last := tasks[0], tasks[len(tasks)-1]
	if len(tasks) == 1 {
		return coalesced{task: first}, nil
	}
	m := *first
	m.After, m.Subject = last.After, last.Subject
	before, err := unmarshalDoc(first.Before)
	if err != nil {
		return coalesced{}, err
	}
	after, err := unmarshalDoc(last.After)
	if err != nil {
		return coalesced{}, err
	}
	if before == nil && after == nil {
		return coalesced{task: &m, none: true}, nil
	}
	m.Added, m.Removed = netMembers(tasks)
	m.Refs = nil
	for _, t := range tasks {
		m.Urgent = m.Urgent || t.Urgent
		m.Obligations.Reasons = append(slices.Clone(m.Obligations.Reasons), t.Obligations.Reasons...)
	}
	m.Obligations.Reasons = slices.Compact(m.Obligations.Reasons)
	changes := diffChanges(before, after)
	m.Changed = changedPathsOf(changes)
	switch {
	case before == nil:
		m.Events = []change.Event{change.Create}
		if len(m.Added) > 0 {
			m.Events = append(m.Events, change.AddMembers)
		}
	default:
		m.Events = semanticEvents(first.Type, before, after, changes, len(m.Added), len(m.Removed))
	}
	if len(m.Events) == 0 {
		return coalesced{task: &m, none: true}, nil // the changes undid each other
	}
	return coalesced{task: &m}, nil
}

// netMembers is the net member change of a group's tasks: a member added then removed (or
// removed then added again) is no change.
func netMembers(tasks []*outbox.Task) (added, removed []string) {
	first := map[string]bool{} // member -> its first change was an add
	final := map[string]bool{} // member -> its last change was an add
	var order []string
	note := func(id string, add bool) {
		if _, seen := first[id]; !seen {
			first[id] = add
			order = append(order, id)
		}
		final[id] = add
	}
	for _, t := range tasks {
		for _, id := range t.Removed {
			note(id, false)
		}
		for _, id := range t.Added {
			note(id, true)
		}
	}
	for _, id := range order {
		switch {
		case first[id] && final[id]:
			added = append(added, id)
		case !first[id] && !final[id]:
			removed = append(removed, id)
		}
	}
	return added, removed
}
