package scimgate.guardrails.mass_deprovision_test

import data.scimgate
import data.scimgate.guardrails.mass_deprovision as md

_config := {
	"defaults": {"mass_deprovision": {"max_per_hour": 500}},
	"targets": {
		"tight": {"mass_deprovision": {"max_per_hour": 10, "max_delete_per_hour": 2, "max_deactivate_per_hour": 5}},
		"frozen": {"mass_deprovision": {"max_per_hour": 0}},
	},
}

_req(events, target, deactivations, deletions) := {
	"action": "patch", "resource_type": "User", "events": events, "target": target, "native_id": "1",
	"previous": {"userName": "a"}, "resource": {"userName": "a", "active": false},
	"stats": {"window": "1h", "last_hour": {
		"create": 0, "update": 900, "deactivate": deactivations, "reactivate": 0,
		"delete": deletions, "rename": 0, "add_members": 0, "remove_members": 0,
	}},
}

test_brake_engages_at_the_limit if {
	d := scimgate.decision with input as _req(["deactivate"], "demo", 300, 200) with data.scimgate.config as _config
	not d.allow
	d.reasons == [`mass-deprovision brake: 500 deactivations and deletions reached target "demo" in the last hour (limit 500); this one is refused. If intended, raise scimgate.config.defaults.mass_deprovision.max_per_hour or wait.`]
}

test_below_the_limit_passes if {
	count(md.deny) == 0 with input as _req(["deactivate"], "demo", 300, 199) with data.scimgate.config as _config
	count(md.deny) == 0 with input as _req(["delete"], "demo", 0, 499) with data.scimgate.config as _config
}

test_delete_braked if {
	count(md.deny) == 1 with input as _req(["delete"], "demo", 0, 600) with data.scimgate.config as _config
}

test_other_events_never_braked if {
	count(md.deny) == 0 with input as _req(["update"], "demo", 1000, 1000) with data.scimgate.config as _config
	count(md.deny) == 0 with input as _req(["reactivate"], "demo", 1000, 1000) with data.scimgate.config as _config
	count(md.deny) == 0 with input as _req(["remove_members"], "demo", 1000, 1000) with data.scimgate.config as _config
}

test_per_event_limits_and_target_source if {
	reasons := md.deny with input as _req(["delete"], "tight", 0, 2) with data.scimgate.config as _config
	reasons == {`mass-deprovision brake: 2 deletions reached target "tight" in the last hour (limit 2); this one is refused. If intended, raise scimgate.config.targets.tight.mass_deprovision.max_delete_per_hour or wait.`}
	count(md.deny) == 0 with input as _req(["deactivate"], "tight", 4, 5) with data.scimgate.config as _config
	d := md.deny with input as _req(["deactivate"], "tight", 5, 5) with data.scimgate.config as _config
	count(d) == 2
}

test_zero_freezes_deprovisioning if {
	count(md.deny) == 1 with input as _req(["delete"], "frozen", 0, 0) with data.scimgate.config as _config
}

test_missing_stats_count_as_zero if {
	i := object.remove(_req(["delete"], "frozen", 0, 0), ["stats"])
	count(md.deny) == 1 with input as i with data.scimgate.config as _config
	count(md.deny) == 0 with input as object.union(i, {"target": "demo"}) with data.scimgate.config as _config
}

test_deactivation_asked_by_another_guardrail_counts if {
	i := _req(["update"], "demo", 500, 0)
	count(md.deny) == 1 with input as i with data.scimgate.config as _config with data.scimgate.guardrails.scoping.deactivate as true
}

test_unconfigured_does_nothing if {
	count(md.deny) == 0 with input as _req(["delete"], "demo", 10000, 10000) with data.scimgate.config as {}
}

# A limit given as a string would never be reached; the brake holds instead.
test_malformed_limit_holds_the_brake if {
	cfg := {"defaults": {"mass_deprovision": {"max_per_hour": "1"}}}
	d := scimgate.decision with input as _req(["deactivate"], "demo", 0, 0) with data.scimgate.config as cfg
	not d.allow
	d.reasons == [`mass_deprovision settings for target "demo" are malformed (scimgate.config.defaults.mass_deprovision.max_per_hour must be a whole number, 0 or more, got string "1"): deactivations and deletions are refused until scimgate.config is fixed.`]
	misspelt := {"defaults": {"mass_deprovision": {"max_per_huor": 1}}}
	e := scimgate.decision with input as _req(["delete"], "demo", 0, 0) with data.scimgate.config as misspelt
	not e.allow
	contains(e.reasons[0], "max_per_huor is not a setting of this guardrail (known: enabled, max_deactivate_per_hour, max_delete_per_hour, max_per_hour)")
}
