package scim

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Schema URNs used throughout the gateway.
const (
	UserSchema           = "urn:ietf:params:scim:schemas:core:2.0:User"
	GroupSchema          = "urn:ietf:params:scim:schemas:core:2.0:Group"
	EnterpriseUserSchema = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	ListResponseSchema   = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	PatchOpSchema        = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	SPConfigSchema       = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
	ResourceTypeSchema   = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
	SchemaSchema         = "urn:ietf:params:scim:schemas:core:2.0:Schema"
)

// Resource types.
const (
	UserType  = "User"
	GroupType = "Group"
)

// Resource is a SCIM resource as a JSON object: strings, json.Number, bool, nil,
// []any and map[string]any, exactly as decoded with UseNumber. Keys keep the case the
// client wrote; lookups through Get and Key are case-insensitive, as SCIM attribute names
// are (RFC 7643 §2.1). Extension attributes live under their schema URN key.
type Resource = map[string]any

// Key returns the key in m that equals name case-insensitively, preferring an exact
// match. ok is false when no key matches.
func Key(m map[string]any, name string) (key string, ok bool) {
	if _, exact := m[name]; exact {
		return name, true
	}
	for k := range m {
		if strings.EqualFold(k, name) {
			return k, true
		}
	}
	return "", false
}

// Get returns the value of the attribute name in m, matched case-insensitively.
func Get(m map[string]any, name string) (any, bool) {
	k, ok := Key(m, name)
	if !ok {
		return nil, false
	}
	return m[k], true
}

// Set stores v under name, reusing the existing key's case when one matches
// case-insensitively, so that one attribute never appears under two spellings.
func Set(m map[string]any, name string, v any) {
	if k, ok := Key(m, name); ok {
		m[k] = v
		return
	}
	m[name] = v
}

// Delete removes the attribute name (case-insensitively) from m.
func Delete(m map[string]any, name string) {
	if k, ok := Key(m, name); ok {
		delete(m, k)
	}
}

// IsURN reports whether s looks like a schema URN ("urn:" prefix, any case).
func IsURN(s string) bool {
	return len(s) > 4 && strings.EqualFold(s[:4], "urn:")
}

// Bool interprets Entra's booleans: JSON true/false, and the strings "True"/"False" in
// any case. ok is false for anything else.
func Bool(v any) (b bool, ok bool) {
	switch x := v.(type) {
	case bool:
		return x, true
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true":
			return true, true
		case "false":
			return false, true
		}
	}
	return false, false
}

// Clone returns a deep copy of a JSON value.
func Clone(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = Clone(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = Clone(e)
		}
		return s
	default:
		return v
	}
}

// CloneResource deep-copies a resource.
func CloneResource(r Resource) Resource {
	if r == nil {
		return nil
	}
	return Clone(r).(map[string]any)
}

// Decode decodes one JSON document with numbers kept as json.Number. Callers must have
// bounded and validated the bytes first (see CheckJSON).
func Decode(data []byte) (any, error) {
	if v, ok := decodeFast(data); ok {
		return v, nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}
