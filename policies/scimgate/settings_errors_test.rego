package scimgate_test

import data.scimgate

_packages := {"packages": ["data.scimgate.guardrails.break_glass", "data.scimgate.guardrails.mass_deprovision", "data.scimgate.guardrails.mine"]}

test_settings_errors_name_every_bad_key if {
	cfg := {
		"defaults": {"break_glass": {"user_names": "bg@x"}, "mine": {"free": "form"}},
		"targets": {"demo": {"mass_deprovision": {"max_per_hour": "1", "max_per_huor": 1}}},
	}
	errs := scimgate.settings_errors with input as _packages with data.scimgate.config as cfg
	errs == {
		{"path": ["scimgate", "config", "defaults", "break_glass", "user_names"], "message": `must be a list of strings, got string "bg@x"`},
		{"path": ["scimgate", "config", "targets", "demo", "mass_deprovision", "max_per_hour"], "message": `must be a whole number, 0 or more, got string "1"`},
		{"path": ["scimgate", "config", "targets", "demo", "mass_deprovision", "max_per_huor"], "message": "is not a setting of this guardrail (known: enabled, max_deactivate_per_hour, max_delete_per_hour, max_per_hour)"},
	}
}

test_settings_errors_section_of_no_guardrail if {
	errs := scimgate.settings_errors with input as _packages with data.scimgate.config as {"defaults": {"breakglass": {}}}
	errs == {{"path": ["scimgate", "config", "defaults", "breakglass"], "message": "configures no loaded guardrail: no package scimgate.guardrails.breakglass (loaded: break_glass, mass_deprovision, mine); fix the name, or remove the section"}}
}

test_settings_errors_shipped_config_clean if {
	count(scimgate.settings_errors) == 0 with input as _packages
}

test_settings_errors_unknown_target if {
	cfg := {"defaults": {}, "targets": {"demo": {}, "dmeo": {"mass_deprovision": {"max_per_hour": 5}}}}
	errs := scimgate.settings_errors with input as {"packages": _packages.packages, "targets": ["demo", "erp"]} with data.scimgate.config as cfg
	errs == {{"path": ["scimgate", "config", "targets", "dmeo"], "message": "names no target of this config's gateways (targets: demo, erp); its settings would never apply: use the target's name, or remove the section"}}
}

test_settings_errors_targets_unchecked_without_them if {
	cfg := {"defaults": {}, "targets": {"dmeo": {}}}
	count(scimgate.settings_errors) == 0 with input as _packages with data.scimgate.config as cfg
}
