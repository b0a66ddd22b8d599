package scimgate_test

import data.scimgate

test_default_allows_create if {
	d := scimgate.decision with input as {"action": "create", "resource_type": "User", "events": ["create"]}
	d.allow == true
	d.skip == false
	count(d.reasons) == 0
}

test_default_has_no_obligations if {
	d := scimgate.decision with input as {"action": "patch", "resource_type": "Group", "events": ["add_members"]}
	count(d.drop_attributes) == 0
	count(d.drop_members) == 0
}
