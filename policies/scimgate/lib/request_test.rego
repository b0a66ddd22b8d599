package scimgate.lib.request_test

import data.scimgate.lib.request

test_defaults_on_an_empty_input if {
	request.resource == {} with input as {}
	request.previous == {} with input as {}
	request.events == set() with input as {}
	request.target == "" with input as {}
	request.native_id == "" with input as {}
	request.changed == [] with input as {}
	request.members_added == [] with input as {}
	request.last_hour("delete") == 0 with input as {}
}

test_nulls_and_wrong_types_are_defaulted if {
	i := {"resource": null, "previous": "x", "events": "create", "target": 3, "stats": {"last_hour": {"delete": "7"}}, "members": {"add": [1, {"id": "a"}]}}
	request.resource == {} with input as i
	request.previous == {} with input as i
	request.events == set() with input as i
	request.target == "" with input as i
	request.last_hour("delete") == 0 with input as i
	request.members_added == [{"id": "a"}] with input as i
}

test_values if {
	i := {"resource": {"userName": "a"}, "events": ["create", 1], "target": "demo", "stats": {"last_hour": {"delete": 7}}}
	request.resource == {"userName": "a"} with input as i
	request.events == {"create"} with input as i
	request.target == "demo" with input as i
	request.last_hour("delete") == 7 with input as i
	request.user_name({"userName": "a"}) == "a"
	request.user_name({"userName": 1}) == ""
	request.display_name({"displayName": "G"}) == "G"
	request.display_name({}) == ""
}
