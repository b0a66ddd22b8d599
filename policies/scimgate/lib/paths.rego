# SCIM attribute paths as the policy contract writes them (drop_attributes, allowlists,
# required attributes): `attr`, `attr.sub`, `urn:...:<Schema>:attr`, `urn:...:<Schema>:attr.sub`.
# The URN is everything up to the last ':' (URNs contain dots, "2.0", so the sub-attribute is
# split off only after it). Names compare case-insensitively, so comparisons go through
# key(), the lower-cased normal form; lookups try the exact (canonical) casing first, which
# is what the gateway sends, and paths handed back keep the resource's casing.
#
# These functions run on every decision: the common case (a canonical top-level name) takes
# the fewest steps.
package scimgate.lib.paths

# reserved are the attributes every resource keeps whatever an allowlist says: the gateway
# and the app need them to know what the resource is.
reserved := {"schemas", "id", "meta"}

# core_urns name the core schemas; `urn:ietf:params:scim:schemas:core:2.0:User:userName`
# is the same attribute as `userName`.
core_urns := {
	"urn:ietf:params:scim:schemas:core:2.0:user",
	"urn:ietf:params:scim:schemas:core:2.0:group",
}

# parse splits path into {"urn": "" for a core attribute, "attr", "sub": "" when none},
# in the path's own casing. A value filter (`emails[type eq "work"].value`) is removed: the
# contract's paths carry none, and an attribute is allowed or dropped as a whole.
parse(path) := {"urn": urn, "attr": parts[0], "sub": concat(".", array.slice(parts, 1, count(parts)))} if {
	[urn, rest] := _split_urn(clean(path))
	parts := split(rest, ".")
}

# clean returns path without surrounding spaces and value filters, in its own casing.
clean(path) := regex.replace(p, `\[[^\]]*\]`, "") if {
	p := trim_space(path)
	contains(p, "[")
} else := trim_space(path)

# _split_urn returns [urn, attribute path]; the core schemas' URNs become "".
_split_urn(path) := [_core_to_empty(substring(path, 0, last)), substring(path, last + 1, -1)] if {
	startswith(lower(path), "urn:")
	colons := indexof_n(path, ":")
	last := colons[count(colons) - 1]
} else := ["", path]

_core_to_empty(urn) := "" if lower(urn) in core_urns

else := urn

# key is the normal form of path: lower-cased, core URNs and filters removed. Two paths
# name the same attribute exactly when their keys are equal.
key(path) := lower(_join(parse(path)))

# attr_key is the key of path without its sub-attribute: `name.givenName` -> `name`.
attr_key(path) := lower(_join(object.union(parse(path), {"sub": ""})))

_join(p) := p.attr if {
	p.urn == ""
	p.sub == ""
} else := concat("", [p.urn, ":", p.attr]) if {
	p.sub == ""
} else := concat(".", [p.attr, p.sub]) if {
	p.urn == ""
} else := concat("", [p.urn, ":", p.attr, ".", p.sub])

# lookup returns obj's value for name compared case-insensitively (exact match first).
# Undefined when obj is no object or lacks name.
lookup(obj, name) := v if {
	v := obj[name]
} else := vals[0] if {
	is_object(obj)
	n := lower(name)
	vals := [v | some k, v in obj; lower(k) == n]
	count(vals) > 0
}

# values returns every value path holds in resource: one for a single-valued attribute,
# one per element for a sub-attribute of a multi-valued one (`emails.value`), none when
# absent.
values(resource, path) := [v] if {
	v := resource[path]
} else := vals if {
	p := parse(path)
	vals := _values_in(lookup(_base(resource, p.urn), p.attr), p.sub)
} else := []

_base(resource, "") := resource

_base(resource, urn) := lookup(resource, urn) if urn != ""

_values_in(v, "") := [v]

_values_in(v, sub) := [x | some e in v; x := lookup(e, sub)] if {
	sub != ""
	is_array(v)
}

_values_in(v, sub) := [x | x := lookup(v, sub)] if {
	sub != ""
	is_object(v)
}

# empty: SCIM's "unassigned" (RFC 7643 2.5) — null, an empty or blank string, [] or {}.
empty(v) if v == null

empty(v) if {
	is_string(v)
	trim_space(v) == ""
}

empty(v) if v == []

empty(v) if v == {}

# present: path holds at least one value in resource that is not empty.
present(resource, path) if {
	some v in values(resource, path)
	not empty(v)
}

# not_allowed returns the paths of everything in resource that the allowlist allowed (an
# array of paths) does not allow, in the resource's own casing: a whole attribute when none
# of it is allowed, `attr.sub` for each sub-attribute not allowed when the allowlist names
# only some sub-attributes of a complex attribute, `urn:...:Schema:attr[.sub]` for extension
# attributes (naming the extension's URN alone allows all of it). reserved attributes are
# always allowed.
not_allowed(resource, allowed) := {p |
	spec := allowlist(allowed)
	some e in _entries(resource)
	some p in _drops(e, spec)
}

# not_allowed_changes returns the entries of changed (paths) an allowlist does not allow
# at all, so a removed attribute (absent from the resource) does not reach the app either.
not_allowed_changes(changed, allowed) := {clean(c) |
	spec := allowlist(allowed)
	some c in changed
	is_string(c)
	not _change_allowed(c, spec)
}

_change_allowed(c, spec) if key(c) in spec.full

_change_allowed(c, _) if key(c) in reserved

# changed names a whole extension (its URN) of which some attributes are allowed: the
# resource-based drops remove the others.
_change_allowed(c, spec) if {
	prefix := concat("", [key(c), ":"])
	some a in (spec.full | spec.partial)
	startswith(a, prefix)
}

_change_allowed(c, spec) if attr_key(c) in spec.full

# changed names the whole complex attribute but only some sub-attributes are allowed:
# the resource-based drops remove the others.
_change_allowed(c, spec) if {
	parse(c).sub == ""
	attr_key(c) in spec.partial
}

_change_allowed(c, spec) if lower(parse(c).urn) in spec.full

# allowlist compiles an allowlist: full = keys allowed as a whole (an extension's URN alone,
# `urn:...:2.0:User`, is one too: it parses as urn `urn:...:2.0` + attr `User`, and its key is
# the URN), partial = attribute keys of which only named sub-attributes are allowed.
allowlist(allowed) := {
	"full": {key(a) | some a in allowed; is_string(a)},
	"partial": {attr_key(a) | some a in allowed; is_string(a); parse(a).sub != ""},
}

# _entries lists the top-level and extension attributes of resource as {"path", "value"};
# an extension's attributes carry its URN as prefix.
_entries(resource) := array.concat(
	[{"path": k, "value": v} |
		some k, v in resource
		not lower(k) in reserved
		not _extension(k, v)
	],
	[{"path": concat(":", [k, a]), "value": v} |
		some k, ext in resource
		_extension(k, ext)
		some a, v in ext
	],
)

_extension(k, v) if {
	is_object(v)
	startswith(lower(k), "urn:")
}

_drops(e, spec) := set() if key(e.path) in spec.full

else := set() if lower(parse(e.path).urn) in spec.full

else := _sub_drops(e, ak, spec) if {
	ak := key(e.path)
	ak in spec.partial
}

else := {e.path}

# _sub_drops: the sub-attributes of a partly allowed complex attribute that are not
# allowed; the whole attribute when it holds no sub-attributes to choose from.
_sub_drops(e, ak, spec) := drops if {
	objs := _objects(e.value)
	count(objs) > 0
	drops := {concat(".", [e.path, s]) |
		some o in objs
		some s, _ in o
		not concat(".", [ak, lower(s)]) in spec.full
	}
} else := {e.path}

_objects(v) := [v] if is_object(v)

else := [o | some o in v; is_object(o)] if is_array(v)

else := []
