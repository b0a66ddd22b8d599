# The settings check the gateway runs once when it loads (or reloads) the policies:
# data.scimgate.settings_errors, next to the decision. Every problem stops the load with
# the data file and the key to fix, so a typo in scimgate.config never switches a guardrail
# off in silence. Each problem is {"path": [...], "message": "..."}, path being the key's
# place in data (["scimgate", "config", "defaults", "break_glass", "user_names"]).
#
# The input is {"packages": [...]}: the path of every loaded package ("data.scimgate.
# guardrails.scoping", ...), so a section naming no loaded guardrail (a typo, or a
# guardrail whose file was removed) is reported too. A guardrail checks its section
# against its settings_schema; one without a schema (your own, say) keeps its section
# free-form. Data outside scimgate.config is never checked.
#
# The gateway checks again for each gateway (scim_gateway block) with input.targets, the
# target names of the config's gateways: a section under targets naming none of them (a
# misspelt target) would never apply, and that target would keep the defaults without its
# stricter guardrails. Without input.targets (the load-once check, opa eval) targets are
# not checked.
package scimgate

import data.scimgate.lib.settings

_root := ["scimgate", "config"]

default _config := {}

_config := data.scimgate.config

settings_errors contains {"path": _root, "message": "must be an object with defaults and targets"} if not is_object(_config)

settings_errors contains {"path": array.concat(_root, [k]), "message": "is not a part of scimgate.config (known: defaults, targets)"} if {
	some k, _ in _config
	not k in {"defaults", "targets"}
}

settings_errors contains {"path": array.concat(_root, [k]), "message": sprintf("must be an object, got %s", [settings.shown(v)])} if {
	some k in ["defaults", "targets"]
	v := _config[k]
	not is_object(v)
}

settings_errors contains {"path": array.concat(_root, ["targets", t]), "message": sprintf("must be an object of guardrail settings, got %s", [settings.shown(v)])} if {
	is_object(_config.targets)
	some t, v in _config.targets
	not is_object(v)
}

settings_errors contains {"path": array.concat(_root, ["targets", t]), "message": sprintf("names no target of this config's gateways (targets: %s); its settings would never apply: use the target's name, or remove the section", [concat(", ", sort(input.targets))])} if {
	is_array(input.targets)
	is_object(_config.targets)
	some t, _ in _config.targets
	not t in input.targets
}

settings_errors contains e if {
	is_object(_config.defaults)
	some name, section in _config.defaults
	some e in _section_errors(["defaults", name], name, section)
}

settings_errors contains e if {
	is_object(_config.targets)
	some t, sections in _config.targets
	is_object(sections)
	some name, section in sections
	some e in _section_errors(["targets", t, name], name, section)
}

_section_errors(at, name, section) := {{"path": _key_path(at, p.key), "message": p.problem} |
	some p in settings.check(section, schema)
} if {
	schema := data.scimgate.guardrails[name].settings_schema
}

_section_errors(at, name, _) := {{"path": array.concat(_root, at), "message": sprintf("configures no loaded guardrail: no package scimgate.guardrails.%s (loaded: %s); fix the name, or remove the section", [name, _loaded_names])}} if {
	not data.scimgate.guardrails[name].settings_schema
	is_array(input.packages)
	not concat(".", ["data.scimgate.guardrails", name]) in input.packages
}

_key_path(at, "") := array.concat(_root, at)

_key_path(at, key) := array.concat(_root, array.concat(at, [key])) if key != ""

_loaded_names := concat(", ", sort({trim_prefix(p, "data.scimgate.guardrails.") |
	some p in input.packages
	startswith(p, "data.scimgate.guardrails.")
}))
