package scimgate.lib.paths_test

import data.scimgate.lib.paths

_ent := "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

test_parse if {
	paths.parse("userName") == {"urn": "", "attr": "userName", "sub": ""}
	paths.parse(" name.givenName ") == {"urn": "", "attr": "name", "sub": "givenName"}
	paths.parse(concat(":", [_ent, "manager.value"])) == {"urn": _ent, "attr": "manager", "sub": "value"}
	paths.parse(concat(":", [_ent, "department"])) == {"urn": _ent, "attr": "department", "sub": ""}
	paths.parse(_ent) == {"urn": "urn:ietf:params:scim:schemas:extension:enterprise:2.0", "attr": "User", "sub": ""}
	paths.parse(`emails[type eq "work"].value`) == {"urn": "", "attr": "emails", "sub": "value"}
	paths.parse("URN:ietf:params:scim:schemas:core:2.0:User:name.givenName") == {"urn": "", "attr": "name", "sub": "givenName"}
}

test_key if {
	paths.key("userName") == "username"
	paths.key(" name.givenName ") == "name.givenname"
	paths.key(concat(":", [_ent, "manager.value"])) == concat(":", [lower(_ent), "manager.value"])
	paths.key(concat(":", [_ent, "department"])) == concat(":", [lower(_ent), "department"])
	paths.key(_ent) == lower(_ent)
}

test_core_urn_is_the_core_attribute if {
	paths.key("urn:ietf:params:scim:schemas:core:2.0:User:userName") == "username"
	paths.key("urn:ietf:params:scim:schemas:core:2.0:Group:displayName") == "displayname"
}

test_key_is_case_insensitive if {
	paths.key("Name.GivenName") == paths.key("name.givenName")
	paths.key(concat(":", [upper(_ent), "Department"])) == paths.key(concat(":", [_ent, "department"]))
	paths.attr_key("name.givenName") == "name"
	paths.attr_key(concat(":", [_ent, "manager.value"])) == concat(":", [lower(_ent), "manager"])
}

test_lookup if {
	paths.lookup({"userName": "a"}, "userName") == "a"
	paths.lookup({"userName": "a"}, "USERNAME") == "a"
	not paths.lookup({"userName": "a"}, "displayName")
	not paths.lookup("not an object", "x")
	not paths.lookup(null, "x")
}

_res := {
	"userName": "ada",
	"name": {"givenName": "Ada", "familyName": ""},
	"emails": [{"value": ""}, {"value": "ada@contoso.example", "type": "work"}],
	"phoneNumbers": [],
	"title": null,
	"nickName": "  ",
	"addresses": [{}],
	_ent: {"department": "Research", "manager": {"value": "42"}},
}

test_present if {
	paths.present(_res, "userName")
	paths.present(_res, "USERNAME")
	paths.present(_res, "name.givenName")
	paths.present(_res, "emails.value")
	paths.present(_res, "emails")
	paths.present(_res, concat(":", [_ent, "department"]))
	paths.present(_res, concat(":", [_ent, "manager.value"]))
	paths.present(_res, "urn:ietf:params:scim:schemas:core:2.0:User:userName")
}

test_absent_or_empty_is_not_present if {
	not paths.present(_res, "displayName")
	not paths.present(_res, "name.familyName")
	not paths.present(_res, "name.middleName")
	not paths.present(_res, "phoneNumbers")
	not paths.present(_res, "title")
	not paths.present(_res, "nickName")
	not paths.present(_res, "addresses.country")
	not paths.present(_res, "emails.display")
	not paths.present(_res, concat(":", [_ent, "employeeNumber"]))
	not paths.present(_res, "urn:example:Other:x")
	not paths.present(_res, "userName.sub")
	not paths.present({}, "userName")
}

test_empty if {
	paths.empty(null)
	paths.empty("")
	paths.empty(" ")
	paths.empty([])
	paths.empty({})
	not paths.empty(false)
	not paths.empty(0)
	not paths.empty("x")
	not paths.empty([null])
}

_user := {
	"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
	"id": "1",
	"meta": {"resourceType": "User"},
	"userName": "ada",
	"active": true,
	"name": {"givenName": "Ada", "familyName": "Lovelace", "middleName": "B"},
	"emails": [{"value": "a@x", "type": "work", "primary": true}, {"value": "b@x", "type": "home"}],
	"phoneNumbers": [{"value": "1"}],
	"nickName": "ada",
	_ent: {"department": "R", "employeeNumber": "E1", "manager": {"value": "2", "displayName": "Boss"}},
}

test_not_allowed_whole_and_sub_attributes if {
	drops := paths.not_allowed(_user, [
		"USERNAME", "active", "name.givenName", "name.familyName", "emails.value",
		concat(":", [_ent, "department"]), concat(":", [_ent, "manager.value"]),
	])
	drops == {
		"name.middleName", "emails.type", "emails.primary", "phoneNumbers", "nickName",
		concat(":", [_ent, "employeeNumber"]), concat(":", [_ent, "manager.displayName"]),
	}
}

test_not_allowed_keeps_reserved if {
	paths.not_allowed(_user, []) == {
		"userName", "active", "name", "emails", "phoneNumbers", "nickName",
		concat(":", [_ent, "department"]), concat(":", [_ent, "employeeNumber"]), concat(":", [_ent, "manager"]),
	}
}

test_not_allowed_whole_extension if {
	drops := paths.not_allowed(_user, ["userName", "active", "name", "emails", "phoneNumbers", "nickName", _ent])
	drops == set()
}

test_not_allowed_sub_of_a_simple_attribute_drops_it if {
	paths.not_allowed({"nickName": "x"}, ["nickName.value"]) == {"nickName"}
	paths.not_allowed({"tags": ["a"]}, ["tags.value"]) == {"tags"}
}

test_not_allowed_core_urn_forms if {
	paths.not_allowed({"userName": "a", "title": "t"}, ["urn:ietf:params:scim:schemas:core:2.0:User:userName"]) == {"title"}
	paths.not_allowed({"urn:ietf:params:scim:schemas:core:2.0:User": {"userName": "a", "title": "t"}}, ["userName"]) == {"urn:ietf:params:scim:schemas:core:2.0:User:title"}
}

test_not_allowed_ignores_non_string_entries if {
	paths.not_allowed({"userName": "a"}, [1, null, "userName"]) == set()
}

test_not_allowed_changes if {
	allowed := ["userName", "name.givenName", "emails.value"]
	changes := ["userName", "name.givenName", "name.middleName", "name", "emails", "phoneNumbers", `addresses[type eq "work"].locality`, concat(":", [_ent, "department"]), 7]
	paths.not_allowed_changes(changes, allowed) == {"name.middleName", "phoneNumbers", "addresses.locality", concat(":", [_ent, "department"])}
	paths.not_allowed_changes(changes, [_ent, "userName", "name", "emails", "phoneNumbers", "addresses"]) == set()
}

# A change (a reconcile's repair lists every attribute it sends) naming id, schemas or meta
# is allowed, as those are in a resource: the gateway refuses to drop them.
test_not_allowed_changes_keeps_reserved if {
	paths.not_allowed_changes(["id", "schemas", "Meta", "title"], ["userName"]) == {"title"}
}

# A change naming a whole extension is allowed when some of its attributes are (the
# resource-based drops remove the rest), and not when none are.
test_not_allowed_changes_whole_extension if {
	ext := "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	paths.not_allowed_changes([ext], [concat(":", [ext, "department"])]) == set()
	paths.not_allowed_changes([ext], [concat(":", [ext, "manager.value"])]) == set()
	paths.not_allowed_changes([ext], ["userName"]) == {ext}
}
