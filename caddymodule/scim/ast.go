package scim

// AttrPath names an attribute as SCIM writes it (RFC 7644 §3.10):
// [URN ":"] Name ["." Sub]. Names keep the case the client wrote; comparisons are
// case-insensitive. URN is empty when the path has no schema prefix.
type AttrPath struct {
	URN  string
	Name string
	Sub  string
}

// Path is a PATCH target (RFC 7644 §3.5.2): an attribute, optionally a value filter
// selecting elements of a multi-valued attribute, and optionally a sub-attribute of
// those elements: emails[type eq "work"].value, members[value eq "x"], name.givenName,
// urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.
//
// When Filter is nil, Attr.Sub carries a plain dotted sub-attribute (name.givenName).
// When Filter is set, Attr.Sub is empty and Sub is the sub-attribute after the bracket.
type Path struct {
	Attr   AttrPath
	Filter Filter // nil unless the path has a [valFilter]
	Sub    string // sub-attribute after "]", e.g. "value"
}

// Filter is a node of a parsed SCIM filter (RFC 7644 §3.4.2.2).
type Filter interface{ isFilter() }

// Comparison operators.
const (
	OpEq = "eq"
	OpNe = "ne"
	OpCo = "co"
	OpSw = "sw"
	OpEw = "ew"
	OpPr = "pr"
	OpGt = "gt"
	OpGe = "ge"
	OpLt = "lt"
	OpLe = "le"
)

// CompareFilter is attrPath op value, or attrPath pr. Value is a string, bool,
// json.Number or nil (JSON null); it is nil for pr. Op is lower case.
type CompareFilter struct {
	Attr  AttrPath
	Op    string
	Value any
}

// AndFilter is Left and Right.
type AndFilter struct{ Left, Right Filter }

// OrFilter is Left or Right.
type OrFilter struct{ Left, Right Filter }

// NotFilter is not (Inner).
type NotFilter struct{ Inner Filter }

// ValuePathFilter is attrPath[valFilter]: true when some element of the multi-valued
// attribute Attr matches Inner, whose attribute paths are relative to the element.
// Entra's "emails[type eq \"work\"].value eq \"x\"" is parsed as
// ValuePathFilter{emails, And(type eq "work", value eq "x")}.
type ValuePathFilter struct {
	Attr  AttrPath
	Inner Filter
}

func (*CompareFilter) isFilter()   {}
func (*AndFilter) isFilter()       {}
func (*OrFilter) isFilter()        {}
func (*NotFilter) isFilter()       {}
func (*ValuePathFilter) isFilter() {}
