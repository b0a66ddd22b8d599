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
guardrail(name) := s if {
	not data.scimgate.config.targets[object.get(input, "target", "")][name]
	s := data.scimgate.config.defaults[name]
	is_object(s)
	not s.enabled == false
}

guardrail(name) := s if {
	t := data.scimgate.config.targets[object.get(input, "target", "")][name]
	s := _merge(object.get(data.scimgate.config, ["defaults", name], null), t)
	is_object(s)
	not s.enabled == false
}

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
