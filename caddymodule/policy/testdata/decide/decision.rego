# One rule per test case, selected by input.client, so each fail-closed path of the engine
# can be exercised from a single loaded policy.
package scimgate

decision := {
	"allow": true,
	"skip": true,
	"reasons": ["in scope", "looks fine"],
	"drop_attributes": ["phoneNumbers", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"],
	"drop_members": ["m1", "m2"],
	"deactivate": true,
} if input.client == "full"

decision := {"allow": false, "reasons": reasons} if input.client == "set_reasons"

reasons contains "second" if input.client == "set_reasons"

reasons contains "first" if input.client == "set_reasons"

decision := {"allow": false} if input.client == "deny_bare"

decision := "yes" if input.client == "not_object"

decision := _at_run_time({"skip": true}) if input.client == "allow_missing"

decision := _at_run_time({"allow": "true"}) if input.client == "allow_string"

decision := _at_run_time({"allow": true, "skip": 1}) if input.client == "skip_number"

decision := _at_run_time({"allow": true, "reasons": "one reason"}) if input.client == "reasons_string"

decision := _at_run_time({"allow": true, "drop_members": ["a", 1]}) if input.client == "members_mixed"

decision := _at_run_time({"allow": true, "drop_attribute": ["phoneNumbers"]}) if input.client == "unknown_key"

decision := _at_run_time({"allow": true, 1: true}) if input.client == "number_key"

# A regular expression taken from the input: invalid ones are runtime errors under strict
# builtin errors.
decision := {"allow": regex.match(input.target, "anything")} if input.client == "bad_regex"

# Two rules with different values for one document: an evaluation conflict.
decision := {"allow": true} if input.client == "conflict"

decision := {"allow": false} if input.client == "conflict"

# Deliberately slow: tens of millions of iterations, stopped by the timeout.
decision := {"allow": n > 0} if {
	input.client == "slow"
	n := count([1 | some i in numbers.range(1, 6000); some j in numbers.range(1, 6000); i != j])
}

decision := {"allow": true} if {
	input.client == "print"
	print("target is", input.target)
}

# Numbers from the input arrive exact (json.Number), large integers included.
decision := {"allow": true, "reasons": [sprintf("%v", [input.resource.big])]} if {
	input.client == "numbers"
	input.resource.big == 12345678901234567890
	input.resource.small == 0.1
	input.resource.nested[0].n == 42
}

# Echoes the input so tests can check the conversion as the policy sees it.
decision := {"allow": true, "reasons": [json.marshal(input)]} if input.client == "echo"

# Malformed decisions whose shape only shows at run time (object.union's result is an
# object of unknown keys to the type checker): written literally, they fail the load.
_at_run_time(d) := object.union(d, {})
