package scimgate.lib.settings_test

import data.scimgate.lib.settings

_config := {
	"defaults": {
		"g": {"limit": 5, "names": ["a", "b"], "nested": {"x": 1, "y": 2}},
		"off": {"enabled": false, "limit": 1},
	},
	"targets": {
		"demo": {"g": {"names": ["c"], "nested": {"y": 3}}, "own": {"limit": 9}, "off": {"enabled": true}},
		"quiet": {"g": {"enabled": false}},
	},
}

test_defaults_without_target if {
	s := settings.guardrail("g") with input as {"target": ""} with data.scimgate.config as _config
	s == {"limit": 5, "names": ["a", "b"], "nested": {"x": 1, "y": 2}}
}

test_unknown_target_gets_defaults if {
	s := settings.guardrail("g") with input as {"target": "other"} with data.scimgate.config as _config
	s.limit == 5
}

test_target_deep_merged_over_defaults if {
	s := settings.guardrail("g") with input as {"target": "demo"} with data.scimgate.config as _config
	s == {"limit": 5, "names": ["c"], "nested": {"x": 1, "y": 3}}
}

test_target_only if {
	s := settings.guardrail("own") with input as {"target": "demo"} with data.scimgate.config as _config
	s == {"limit": 9}
	not settings.guardrail("own") with input as {"target": ""} with data.scimgate.config as _config
}

test_unconfigured_is_undefined if {
	not settings.guardrail("nothing") with input as {"target": "demo"} with data.scimgate.config as _config
	not settings.guardrail("g") with input as {"target": "demo"} with data.scimgate.config as {}
}

test_enabled_false_switches_off if {
	not settings.guardrail("off") with input as {"target": ""} with data.scimgate.config as _config
	not settings.guardrail("g") with input as {"target": "quiet"} with data.scimgate.config as _config
	s := settings.guardrail("off") with input as {"target": "demo"} with data.scimgate.config as _config
	s.limit == 1
}

test_source_names_where_a_key_is_set if {
	settings.source("g", "limit") == "scimgate.config.defaults.g.limit" with input as {"target": "demo"} with data.scimgate.config as _config
	settings.source("own", "limit") == "scimgate.config.targets.demo.own.limit" with input as {"target": "demo"} with data.scimgate.config as _config
}

test_non_object_section_is_not_configured if {
	not settings.guardrail("g") with input as {"target": ""} with data.scimgate.config as {"defaults": {"g": true}}
	not settings.guardrail("g") with input as {"target": ""} with data.scimgate.config as {"defaults": {"g": ["x"]}}
}

test_missing_target_field_uses_defaults if {
	s := settings.guardrail("g") with input as {} with data.scimgate.config as _config
	s.limit == 5
}
