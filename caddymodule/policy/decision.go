package policy

import (
	"errors"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Sentinel errors returned (wrapped) by Decide together with a deny Decision, so callers can
// count and log the kinds of policy failure apart. Every one of them means the request was
// denied: the engine fails closed.
var (
	// ErrUndefined: the query produced no value for this input.
	ErrUndefined = errors.New("policy decision undefined")
	// ErrTimeout: evaluation was stopped by the per-decision timeout or by the caller's
	// context (the wrapped context error says which).
	ErrTimeout = errors.New("policy evaluation timed out")
	// ErrEval: evaluation failed (a builtin error under strict builtin errors, a rule
	// conflict, ...).
	ErrEval = errors.New("policy evaluation failed")
	// ErrBadDecision: the query produced a value that is not a valid decision object.
	ErrBadDecision = errors.New("policy decision malformed")
	// ErrInput: the input could not be converted for evaluation (the gateway's fault, not the
	// policy's).
	ErrInput = errors.New("policy input invalid")
)

// Decision is the policy's answer for one write request to one target. Its zero value denies.
type Decision struct {
	// Allow false answers the request with a 403 carrying Reasons; nothing reaches the app.
	Allow bool
	// Skip (with Allow) marks the change out of scope: Entra gets a success, the directory
	// keeps the change, the app gets nothing.
	Skip bool
	// Reasons are sentences a person can act on; shown to Entra on deny, journaled always.
	Reasons []string
	// DropAttributes are SCIM attribute paths removed from what the app receives.
	DropAttributes []string
	// DropMembers are member SCIM ids whose add/remove must not reach the app.
	DropMembers []string
	// Deactivate (with Allow) sends the app a deactivation instead of this change.
	Deactivate bool
}

// Keys of the decision object (the contract in doc.go).
const (
	keyAllow          = "allow"
	keySkip           = "skip"
	keyReasons        = "reasons"
	keyDropAttributes = "drop_attributes"
	keyDropMembers    = "drop_members"
	keyDeactivate     = "deactivate"
)

// maxDecisionStrings bounds each list in a decision. A policy that echoes client data into
// reasons could otherwise make the 403 body and the journal record arbitrarily large.
const maxDecisionStrings = 1000

// decodeDecision converts the query's value straight from its AST form (no JSON round trip).
// Unknown keys are rejected rather than ignored: a misspelt obligation such as
// "drop_attribute" would otherwise silently let the attribute through to the app.
func decodeDecision(query string, v ast.Value) (Decision, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return Decision{}, badDecision("%s must be an object such as {\"allow\": true}, got %s", query, ast.ValueName(v))
	}
	var d Decision
	var sawAllow bool
	err := obj.Iter(func(k, val *ast.Term) error {
		key, ok := k.Value.(ast.String)
		if !ok {
			return badDecision("%s has a non-string key %v; decision keys are allow, skip, reasons, drop_attributes, drop_members, deactivate", query, k)
		}
		var err error
		switch string(key) {
		case keyAllow:
			sawAllow = true
			d.Allow, err = decodeBool(query, keyAllow, val.Value)
		case keySkip:
			d.Skip, err = decodeBool(query, keySkip, val.Value)
		case keyDeactivate:
			d.Deactivate, err = decodeBool(query, keyDeactivate, val.Value)
		case keyReasons:
			d.Reasons, err = decodeStrings(query, keyReasons, val.Value)
		case keyDropAttributes:
			d.DropAttributes, err = decodeStrings(query, keyDropAttributes, val.Value)
		case keyDropMembers:
			d.DropMembers, err = decodeStrings(query, keyDropMembers, val.Value)
		default:
			err = badDecision("%s has unknown key %q; decision keys are allow, skip, reasons, drop_attributes, drop_members, deactivate", query, string(key))
		}
		return err
	})
	if err != nil {
		return Decision{}, err
	}
	if !sawAllow {
		return Decision{}, badDecision("%s has no \"allow\" key; every decision must say allow: true or allow: false", query)
	}
	return d, nil
}

func decodeBool(query, key string, v ast.Value) (bool, error) {
	b, ok := v.(ast.Boolean)
	if !ok {
		return false, badDecision("%s.%s must be a boolean, got %s", query, key, ast.ValueName(v))
	}
	return bool(b), nil
}

// decodeStrings accepts an array or a set of strings: `reasons contains msg if ...` builds a
// set, and requiring policies to convert it would only add noise. Sets come out sorted, so
// the result is deterministic.
func decodeStrings(query, key string, v ast.Value) ([]string, error) {
	var terms []*ast.Term
	switch x := v.(type) {
	case *ast.Array:
		terms = make([]*ast.Term, x.Len())
		for i := range terms {
			terms[i] = x.Elem(i)
		}
	case ast.Set:
		terms = x.Slice()
	default:
		return nil, badDecision("%s.%s must be an array of strings, got %s", query, key, ast.ValueName(v))
	}
	if len(terms) == 0 {
		return nil, nil
	}
	if len(terms) > maxDecisionStrings {
		return nil, badDecision("%s.%s has %d entries, more than the %d allowed", query, key, len(terms), maxDecisionStrings)
	}
	out := make([]string, len(terms))
	for i, t := range terms {
		s, ok := t.Value.(ast.String)
		if !ok {
			return nil, badDecision("%s.%s must be an array of strings, but entry %d is %s", query, key, i, ast.ValueName(t.Value))
		}
		out[i] = string(s)
	}
	return out, nil
}

func badDecision(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadDecision, fmt.Sprintf(format, args...))
}
