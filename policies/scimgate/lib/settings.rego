# Guardrail configuration from data.scimgate.config (policies/scimgate/config/data.json):
#
#   {"defaults": {"<guardrail>": {...}}, "targets": {"<target>": {"<guardrail>": {...}}}}
#
# A target's settings are deep-merged over the defaults (object.union: objects merge key by
# key, anything else — lists included — is replaced), so a target overrides one key without
# repeating the rest. A guardrail reads its own section by its package name. A
# configuration that is not made of objects is an evaluation error: the gateway fails closed.
package scimgate.lib.settings

import data.scimgate.lib.request

default _config := {}

_config := data.scimgate.config

# guardrail returns the settings of the guardrail name for the request's target: its
# section of the defaults with the target's section merged over it. Undefined — the
# guardrail does nothing — when neither configures it (as an object), or when they say
# "enabled": false (to switch a default guardrail off for one target).
#
# Every guardrail calls this once per decision (binding it to a rule), so the common case
# (no per-target override) is plain lookups; merging happens only when the target has a
# section of its own.
guardrail(name) := guardrail_settings(section(name))

# section returns what the configuration holds for guardrail name for the request's
# target, whatever its type (undefined when nothing): the defaults' section, or the
# target's merged over it. A guardrail binds it once, to read its settings
# (guardrail_settings) and to check them (malformed).
#
# One lookup in the common case (the target has no section of its own): every guardrail
# calls it on every decision.
section(name) := s if {
	t := data.scimgate.config.targets[_target][name]
	s := _merge(object.get(data.scimgate.config, ["defaults", name], null), t)
} else := data.scimgate.config.defaults[name]

# _target is the request's target as section reads it (a rule: computed once per decision).
# It reads input.target, not the whole input (object.get(input, ...)), so a preview can
# keep every guardrail's settings from one user to the next (policy.Memo).
default _target := ""

_target := input.target

_merge(d, t) := object.union(d, t) if {
	is_object(d)
	is_object(t)
} else := t

# source returns where a guardrail's setting key is configured for the request's target,
# as a path a person can edit: scimgate.config.targets.<target>.<name>.<key> when the target
# sets it, else scimgate.config.defaults.<name>.<key>.
source(name, key) := sprintf("scimgate.config.targets.%s.%s.%s", [request.target, name, key]) if {
	_ = _config.targets[request.target][name][key]
} else := sprintf("scimgate.config.defaults.%s.%s", [name, key])

# --- settings checks ---
#
# Every shipped guardrail declares the settings it reads as settings_schema, an object from
# key to type:
#
#   "boolean"   true or false
#   "count"     a whole number, 0 or more
#   "strings"   a list of strings
#   "patterns"  a list of strings, each a valid RE2 regular expression
#   [a, b, ...] one of these strings
#
# "enabled" (a boolean) is a setting of every guardrail. A setting of the wrong type, or a
# key the schema does not know (a typo), would otherwise switch the guardrail off in
# silence: `some n in "bg@x"` matches nothing, and `is_number("1")` is false. The gateway
# refuses to load such a configuration (data.scimgate.settings_errors), and a guardrail
# that meets one anyway (data loaded another way) refuses the requests it guards through
# malformed below, never treating the setting as "off".

# guardrail_settings returns the settings in section s when they are an object and not
# switched off; undefined otherwise (settings.guardrail for a bound section).
guardrail_settings(s) := s if {
	is_object(s)
	not s.enabled == false
}

# malformed returns the reason a guardrail gives when its section s (from section(name))
# breaks its schema, refusing what it guards (what: "deactivations and deletions are");
# undefined when it is well-formed or switched off. Guardrails bind it to a rule on their
# own section, so a request whose target does not configure them pays one lookup.
#
# It checks the guardrail's own section. The shape of scimgate.config around it (defaults,
# targets and a target being objects) is checked when the gateway loads the policies
# (settings_errors) and not per decision, where it would cost every write a fifth more.
# Under the gateway, whose load check covers the section too, it checks nothing
# (_checked_at_load): a malformed section never got loaded.
malformed(name, s, schema, what) := sprintf(
	"%s settings for target %q are malformed (%s): %s refused until scimgate.config is fixed.",
	[name, request.target, concat("; ", sort(ps)), what],
) if {
	not _off(s)
	not _checked_at_load(name, schema)
	not _valid_settings(s, schema)
	ps := {sprintf("%s %s", [_source(name, p.key), p.problem]) | some p in check(s, schema)}
	count(ps) > 0
}

_off(s) if s.enabled == false

# _checked_at_load: the gateway checked this guardrail's sections against this schema (its
# settings_schema) when it loaded the policies, and would not have loaded a malformed one
# (data.scimgate_gateway.settings_checked, which the gateway sets, and no data file may);
# the data cannot change without a new load, so a decision need not check again. Anywhere
# else (opa eval, the tests here) every decision checks.
_checked_at_load(name, schema) if {
	data.scimgate_gateway.settings_checked == true
	data.scimgate.guardrails[name].settings_schema == schema
}

_source(name, "") := _owner(name)

_source(name, key) := source(name, key) if key != ""

_owner(name) := sprintf("scimgate.config.targets.%s.%s", [request.target, name]) if {
	_ = _config.targets[request.target][name]
} else := sprintf("scimgate.config.defaults.%s", [name])

_valid_settings(s, schema) if {
	is_object(s)
	not _any_invalid(s, schema)
}

# _any_invalid and _non_string are `every` written as `not some`: OPA evaluates them
# with fewer allocations, and every create pays for the check.
_any_invalid(s, schema) if {
	some k, v in s
	not _valid_setting(k, v, schema)
}

_valid_setting("enabled", v, _) if is_boolean(v)

_valid_setting(k, v, schema) if {
	k != "enabled"
	_is_type(schema[k], v)
}

_is_type("boolean", v) if is_boolean(v)

_is_type("count", v) if _count(v)

_is_type("strings", v) if _strings(v)

_is_type("patterns", v) if {
	_strings(v)
	not _invalid_pattern(v)
}

_invalid_pattern(v) if {
	some p in v
	not regex.is_valid(p)
}

_is_type(t, v) if {
	is_array(t)
	v in t
}

# check returns the problems of one settings object s against schema, each as
# {"key": <setting, "" for the section itself>, "problem": <text>}.
check(s, schema) := {{"key": "", "problem": _must_be_object(s)}} if not is_object(s)

else := {p | some k, v in s; some p in _key_problems(k, v, schema)}

_must_be_object(v) := sprintf("must be an object, got %s", [shown(v)])

_key_problems("enabled", v, _) := {{"key": "enabled", "problem": msg} | some msg in type_problems("boolean", v)}

_key_problems(k, v, schema) := {{"key": k, "problem": msg} | some msg in type_problems(t, v)} if {
	k != "enabled"
	t := schema[k]
}

_key_problems(k, _, schema) := {{"key": k, "problem": sprintf("is not a setting of this guardrail (known: %s)", [concat(", ", sort({x | some x, _ in schema} | {"enabled"}))])}} if {
	k != "enabled"
	not schema[k]
}

# type_problems returns why v is not of the schema type t: empty when it is.
type_problems("boolean", v) := {msg | not is_boolean(v); msg := sprintf("must be true or false, got %s", [shown(v)])}

type_problems("count", v) := {msg | not _count(v); msg := sprintf("must be a whole number, 0 or more, got %s", [shown(v)])}

type_problems("strings", v) := {msg | not _strings(v); msg := sprintf("must be a list of strings, got %s", [shown(v)])}

type_problems("patterns", v) := {msg | not _strings(v); msg := sprintf("must be a list of regular expressions (strings), got %s", [shown(v)])} | {msg |
	_strings(v)
	some p in v
	not regex.is_valid(p)
	msg := sprintf("holds %s, which is not a valid RE2 regular expression", [json.marshal(p)])
}

type_problems(t, v) := {msg | not v in t; msg := sprintf("must be one of %s, got %s", [concat(", ", [json.marshal(x) | some x in t]), shown(v)])} if is_array(t)

_count(v) if {
	is_number(v)
	v >= 0
	round(v) == v
}

_strings(v) if {
	is_array(v)
	not _non_string(v)
}

_non_string(v) if {
	some x in v
	not is_string(x)
}

# shown describes a value for a reason: its type, and the value when it is short.
shown(v) := sprintf("%s %s", [type_name(v), j]) if {
	j := json.marshal(v)
	count(j) <= 40
} else := sprintf("%s (%d bytes of JSON)", [type_name(v), count(json.marshal(v))])
