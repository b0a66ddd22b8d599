// Package mapping rewrites SCIM changes into a legacy application's native REST calls,
// declaratively, from a mapping file. The file is compiled once (Load or Parse, at
// provision time); every problem in it is a *LoadError naming the file and the rule, for
// example
//
//	demo.json: users.events.create.body["person.first"]: unknown transform "lowr" (known: ...)
//
// and the compiled *Mapping builds requests (Requests, LookupRequest) without parsing
// anything, concurrently. gjson/sjson paths come from the file only; no value from a
// client ever reaches them as a path.
//
// # The mapping file (version 1)
//
// A JSON object. Unknown keys are errors everywhere, so a misspelt option fails the load
// instead of being ignored; so is a key written twice in one object (a second "create"
// would otherwise replace the first without a word).
//
//	{
//	  "version": 1,                                   required, must be 1
//	  "headers": {"X-Api-Key": "{env.DEMO_KEY}"},     optional, sent with every call
//	  "tables":  {"depts": {"Sales": "S"}},           optional, named tables for lookup
//	  "expect":  {expectation},                       optional, every call's (see Answers)
//	  "users":   {resource section},                  optional (an app without users)
//	  "groups":  {resource section}                   optional (an app without groups)
//	}
//
// At least one of users and groups must be present.
//
// A resource section:
//
//	{
//	  "headers": {...},                  optional, added to (and overriding) the file's
//	  "lookup":  {call},                 optional, see Lookup below
//	  "list":    {call},                 optional: every account, page by page (see Lists)
//	  "list_members": {call},            groups only, optional: a group's members (see Lists)
//	  "events":  {"create": {call}, ...} the native call of each semantic event
//	  "roles":   {...}                   groups only, instead of events: see Groups as roles
//	  "create_batch": {...}              optional: the app's bulk create (see Batch creates)
//	}
//
// Events of users: create, update, deactivate, reactivate, delete. Events of groups:
// create, update (a rename is an update of displayName), delete, add_members,
// remove_members. Any other name is a load error. An event that is absent (or null) has no
// native call: the gateway skips it (the directory takes the change, and the record says
// which events had no call), so an app without groups still works for users.
//
// # Calls
//
//	{
//	  "method":  "POST",                 GET, POST, PUT, PATCH or DELETE (a lookup: GET)
//	  "path":    "/api/v1/accounts/{id}",URL template, appended to the target's base URL
//	  "headers": {"Accept": "..."},      optional, added to (and overriding) outer headers
//	  "body":    {"native.path": field}, optional; no body when absent
//	  "id":      "id",                   create and lookup: where the native id is (see
//	                                     Native ids): a gjson path, {"header": ...} or
//	                                     {"location": ...}
//	  "encoding": "json",                optional: "json" (default) or "form" (see Encodings)
//	  "form_keys": "brackets",           "form" only: "brackets" (default) or "dots"
//	  "send":    "changed",              update only: "changed" (default) or "all"
//	  "members": "each",                 member events: "each" (default) or "batch"
//	  "batch_size": 100,                 "batch" only: ids per call, 1..10000, default 100
//	  "member_types": ["User"],          member events: which members are sent, default
//	                                     ["User"]; add "Group" for apps with nested groups
//	  "idempotent": true,                optional: may the gateway retry the call after a
//	                                     failure in flight? Default: true for GET, PUT and
//	                                     DELETE, false for POST and PATCH
//	  "expect": {expectation}            optional: what the answer must look like; each key
//	                                     given replaces the file's (see Answers)
//	}
//
// A deactivation maps either to a dedicated call ("deactivate": POST .../lock, no body)
// or to an update of a field, with a body such as
// "locked": {"from": "active", "transforms": ["not"]}. A user without active is given to
// the mapping as active (SCIM leaves the default to the server; the engine reads it so), so
// such a create sends an active account's state, not nothing; unless the policy keeps
// active from the app (drop_attributes).
//
// # Flows
//
// An event maps to one call (an object) or to a flow: a list of calls made in order, under
// one intent, every call journaled. A call may carry a condition, "when", and is made only
// when every part of it holds for the change:
//
//	"when": {
//	  "equals":  {"active": false},      the attribute holds this value (Entra's "False" too)
//	  "changed": ["title", "manager"],   one of them changed (on a create: has a value)
//	  "present": ["externalId"],         each has a value
//	  "absent":  ["urn:...:employeeNumber"]  none has a value
//	}
//
// In a create's flow, the calls after the one whose answer gives the native id ("id") may
// use it ({id}, $id): create the account, then suspend it when the user starts inactive.
// Any call may read the answers of the calls made before it: "$answer.N.path" (a gjson
// path into the JSON answer of call N, from 0; {answer.N.path} in a URL) and
// "$header.N.Name" (a header of it, e.g. {header.0.Location}); a call whose condition did
// not hold has no answer (the value is absent).
// When the create's outcome was lost and Entra retries, the account is adopted (see
// Lookup) and the flow resumes after the call that made it. When a flow fails part-way,
// the calls it made that are not idempotent are remembered with the resource (for a
// create, with the name it claims), and the change's retry does not make them again (an
// identical call: same method, path and body); the change's commit forgets them. Member
// calls ("members") are
// not part of flows of several calls; a flow has at most 16 calls.
//
//	"create": [
//	  {"method": "POST", "path": "/v2/users", "id": "user.id", "body": {"login": "userName"}},
//	  {"method": "POST", "path": "/v2/users/{id}/suspend", "when": {"equals": {"active": false}}}
//	]
//
// # Headers
//
// Header names are HTTP tokens; values may hold placeholders such as {env.DEMO_KEY},
// resolved once at load by the resolve function the caller passes (in Caddy, the
// replacer). A resolved value with a control character (a line break) is a load error, and
// load errors never quote resolved values. An empty value removes a header set at an outer
// level. Content-Type: application/json is added to calls with a body unless set.
//
// A call's own header may instead be computed for each request, like a body field (an
// object with "from", "value", "transforms"): an app with optimistic concurrency, which
// wants an update's If-Match to be the ETag its GET gave (and answers 428 without it, 412
// when the account changed since), is mapped with a flow that reads the account first:
//
//	"update": [
//	  {"method": "GET", "path": "/users/{id}"},
//	  {"method": "PATCH", "path": "/users/{id}", "body": {"title": "title"},
//	   "headers": {"If-Match": {"from": "$header.0.ETag"}}}]
//
// A value that is absent leaves the header out; one that is not a single line of text
// fails the request. Content-Type, Content-Length, Host, Transfer-Encoding and
// Authorization cannot be computed. The app's 412 and 428 are outages for Entra (503 with
// Retry-After: the app did nothing, and the retry reads the account again), never a 400.
//
// # URL templates
//
// A template starts with "/" and names no scheme or host. Placeholders in braces:
//
//	{id}          the resource's native id (not in create or lookup)
//	{member_id}   the member's native id (member events with "members": "each")
//	{scim_id}     the resource's SCIM id
//	{userName}    any SCIM attribute path, e.g. {emails[type eq "work"].value}
//
// Note that {id} is the native id; the SCIM id is {scim_id}. Values are path-escaped
// (url.PathEscape, and "+" as %2B, which apps that decode paths as forms would read as
// a space) before the "?" and query-escaped (url.QueryEscape) after it, so a value
// can never add a path segment or a query parameter. A placeholder that is absent, empty,
// a list or an object, or "." or ".." in the path, fails the request (400 invalidValue)
// rather than calling a different URL. So does a SCIM value with a "/" or a backslash in
// the path: escaped, it is still another path to an app that decodes its path before
// routing it (every WSGI app, IIS), so a userName "victim/roles" must not reach
// /users/victim/roles; put such a value in the query or the body. Native ids ({id},
// {member_id}) and answers are the app's own and keep their slashes, as does a slash a
// transform writes (a table's value). "{{" and "}}" are literal braces.
//
// A placeholder may pass its value through transforms (see Transforms), each after a "|":
// a name, or a name, ":" and its arguments in JSON exactly as the {"name": args} form
// takes them (one argument, or a list of them):
//
//	{userName|trim|lower}
//	{emails[type eq "work"].value|lower}
//	{urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division|lookup:["divisions", "OTHER"]}
//	{id|upper}          gateway values take transforms too
//
// so that a lookup finds an account by the key the create sent (in the file's JSON
// strings, quotes are escaped):
//
//	"create": {"method": "POST", "path": "/accounts", "id": "id",
//	           "body": {"email": {"from": "emails[type eq \"work\"].value", "transforms": ["lower"]}}},
//	"lookup": {"method": "GET", "path": "/accounts?email={emails[type eq \"work\"].value|lower}", "id": "items.0.id"}
//
// A placeholder ends at the first "}", and its steps are split at each "|", found outside
// double-quoted strings and outside [...] and {...}, so a filter value or a JSON argument
// may hold "|", "}" or ":" ({emails[type eq "a|b"].value}, {userName|lookup:{"x": "}"}}:
// braces inside a placeholder pair up, and its last "}}" is no literal brace). The first
// ":" of a step ends its name. Transforms run before escaping, and their result must be
// one non-empty value like any placeholder's. An unknown transform, bad arguments or a
// table missing from "tables" is a load error naming the rule. The template transform
// takes the same placeholders, transforms included.
//
// # Encodings
//
// A body is JSON unless the call says "encoding": "form": application/x-www-form-urlencoded,
// built from the same body fields (the JSON body is built, then flattened in field order).
// The encoding sets the Content-Type; a header that says otherwise is a load error. Nested
// native paths become "person[first]=Ada" with "form_keys": "brackets" (the default, as
// PHP and Rails read them) or "person.first=Ada" with "dots" (as Spring binds them); a list
// becomes "ids[]=1&ids[]=2" (brackets) or "ids=1&ids=2" (dots); true and false are sent as
// text and a cleared attribute (null in an update) as an empty value. A constant object,
// or a list of objects or lists, has no form encoding: a load error naming the rule (a
// SCIM value of that shape, such as the whole "emails", fails the request with 400).
// A form has no structure but its keys, so a key holding the separator ("." with dots,
// "[" or "]" with brackets) would name another field: one of the mapping is a load error,
// and one of the client's data (an object of a custom extension, whose keys Entra
// chooses) fails the request with 400 rather than set prefs.class.module... or
// prefs[a][role].
//
//	"create": {"method": "POST", "path": "/users.php", "encoding": "form", "id": {"location": "last_segment"},
//	           "body": {"login": "userName", "person.first": "name.givenName"}}
//
// # Body fields
//
// The body is an object from native paths to fields, sent in the order written. A native
// path is gjson/sjson dotted syntax over object keys: "person.first" sets
// {"person": {"first": ...}}; write "\\." (in JSON source) for a dot inside a key. Every
// other character is literal: the path is compiled per component with gjson.Escape, and
// numeric components ("0") are object keys, not array indexes. Two paths of which one
// contains the other ("person" and "person.first") are a load error.
//
// A field is a SCIM path (the shorthand "login": "userName") or an object:
//
//	{
//	  "from": "name.givenName",   a SCIM path or a gateway value (below)
//	  "value": "employee",        or a constant JSON value (any type)
//	  "transforms": [...],        optional, applied in order
//	  "required": true            optional: an empty result fails the request (400)
//	}
//
// A field with neither "from" nor "value" must start with a transform that produces a
// value (constant, default, template, first_non_empty).
//
// SCIM paths use full SCIM path syntax, with attribute names in any case:
//
//	userName, name.givenName                 core attributes and sub-attributes
//	emails[type eq "work"].value             the first element the filter matches
//	emails.value                             the list of every element's value
//	urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department
//	department                               enterprise attributes may omit their URN
//	urn:ietf:params:scim:schemas:extension:MyApp:2.0:User:badge   custom extensions,
//	                                         which Entra does not list in schemas[]
//	manager (or its URN path, or manager.value)   the manager's NATIVE id, from the id map
//
// Paths are checked against the SCIM schemas at load (a misspelt core or enterprise
// attribute is an error); custom extension URNs accept any attribute name. A manager
// who is in the directory but whose account does not exist in the app yet fails the
// request with 400 invalidValue (Entra retries it later) instead of silently dropping the
// reference; a create is sent without the link instead (Entra links managers in a later
// PATCH). A manager the directory does not have (deleted, or never provisioned) is no
// manager: the field is absent, as for a user without one.
//
// Gateway values, for "from": "$id" (native id), "$scim_id", "$member_id" (each mode),
// "$member_ids" (batch mode: the list of the members' native ids, as strings; add
// "to_int" for an app with integer ids) and "$role_ids" (groups.roles.assign only: the
// user's roles, every one, as strings).
//
// An absent or null attribute gives no value: the field is left out of the body, except
// in an update with "send": "changed", where a changed attribute that is now absent is
// sent as JSON null so the app clears it (use default("") for apps that clear with an
// empty string). Native ids are handled as text throughout.
//
// # Updates: "send"
//
// With "send": "changed" (the default), an update sends only the fields whose SCIM sources
// (including the paths a template or first_non_empty reads) are among Input.Changed, where
// a change of "name" covers "name.givenName" and the other way round, and an extension URN
// covers all its attributes. Fields without a SCIM source (constants) are not sent. When no
// field qualifies, no call is made. With "send": "all" every field is sent (typically with
// PUT).
//
// # Transforms
//
// A transform is a name ("lower") or an object with one key, the name, whose value is the
// argument or the list of arguments ({"join": ", "}, {"bool": ["Y", "N"]}). To pass a list
// as the single argument of constant or default, wrap it: {"constant": [["a", "b"]]}.
// String transforms apply to each string of a list. An absent value passes through every
// transform unchanged except default, constant, first_non_empty and template.
//
//	lower, upper, trim         case and white space
//	default(value)             value when absent, null, "" or an empty list
//	constant(value)            always value
//	join(sep)                  list -> string (null elements skipped); scalars -> text
//	split(sep)                 string -> list of strings ("" -> [])
//	lookup(table, default?)    table: a name from "tables" or an inline object; keys are
//	                           matched exactly (add lower first for case-insensitivity);
//	                           without a default a value not in the table fails the request
//	bool(true_value, false_value)   SCIM booleans, including Entra's "True"/"False"
//	not                        boolean negation (active -> locked)
//	date(layout_out), date(layout_in, layout_out)
//	                           reformat a date; layout_in defaults to RFC 3339 (SCIM
//	                           dateTime). Named layouts: rfc3339, date (2006-01-02),
//	                           datetime (2006-01-02 15:04:05), unix, unix_ms (numbers);
//	                           anything else is a Go layout such as "02.01.2006". The
//	                           input's time zone is kept
//	first_non_empty(paths...)  the value so far if not empty, else the first non-empty of
//	                           the given SCIM paths
//	regex_replace(pattern, replacement)   RE2 syntax (linear time), compiled at load;
//	                           the replacement may use $1 and ${name}
//	template("{name.givenName} {name.familyName}")
//	                           a string from SCIM paths (same placeholders as URLs,
//	                           transforms included, unescaped); absent values render as
//	                           nothing, lists as "a, b"; absent when every placeholder is
//	                           empty
//	to_int                     number or numeric string -> integer
//	to_string                  scalar -> text
//	first                      list -> its first element
//
// A value a transform cannot convert fails the request with 400 invalidValue; the detail
// names the rule and the SCIM source, never the value (it may be personal data).
//
// # Members
//
// add_members and remove_members receive the members with their native ids already looked
// up. "each" makes one call per member ({member_id} in the path or "$member_id" in the
// body); "batch" makes one call per batch_size members with "$member_ids" in the body. A
// member of a type not in member_types is left out; a selected member without a native id
// fails the request (the gateway resolves or reports such members first).
//
// # Batch creates
//
// Many apps have a bulk import: one call that creates several accounts (or teams).
// "create_batch" declares it, and queued delivery (only) sends the creates of different
// resources that are ready together through it, up to batch_size a call, instead of one
// create call each. Each item's body is exactly what the resource type's create would send
// (its first call, which must give the "id", have no condition and send JSON); the batch
// puts them in a list:
//
//	"create_batch": {
//	  "method": "POST",                  POST, PUT or PATCH
//	  "path": "/api/v1/accounts:batch",  no placeholders: of no resource in particular
//	  "batch_size": 100,                 items per call, 1..1000, default 100
//	  "body_items": "accounts",          required: the native path of the list in the
//	                                     request body ({"accounts": [...]}); "" sends the
//	                                     bare list ([...])
//	  "items": "results",                required: the gjson path of the answer's list of
//	                                     results; "" when the answer is the bare list
//	  "id": "id",                        required: the native id's path in a result
//	  "match": {"login": "{userName|trim}"},  optional: pair results with items by value
//	                                     (as a lookup's match: gjson path in a result ->
//	                                     template of the item's resource, compared
//	                                     case-insensitively); without it, by position
//	  "item_error": "error",             optional: a path in a result whose value (not
//	                                     null, false or "") says the app refused that item
//	  "headers": {...}, "expect": {...}  as any call's; the answer must be JSON
//	}
//
// What each result proves: an id, that the item was created (the id map takes it); an
// item_error, that the app refused that item (its task becomes a dead letter with what
// the app said, the other items are delivered); anything else, nothing. By position, a
// list of another length than the items sent proves nothing for any of them (positions
// cannot be trusted then); with "match", a result that pairs with no item, or an item
// that pairs with several results, proves nothing for that item. An item nothing proves,
// and every item of a call whose answer is not what it seems (an HTML page with 200, a
// proxy's 404, JSON without the list), or was lost (a timeout, a dropped connection, a
// 5xx), is an outage: never acknowledged as created, listed for adoption, and retried with
// backoff on its own, looked up first, so that it is never created twice. The resource
// type's "lookup" is therefore required. The app's own refusal of the whole call (its 4xx)
// tries each item again at once on its own, so that a dead letter is the change the app
// refused. The rest of a created item's flow (a team's member adds, the deactivation of
// an account created inactive) follows as after a single create.
//
// # Groups as roles
//
// Many apps have no groups with members: access is a list of roles (or entitlements) on
// the user, and the roles already exist in the app. There, each group of the directory
// stands for one existing role, and the groups section has "roles" instead of "events":
//
//	"groups": {
//	  "lookup": {"method": "GET", "path": "/roles?name={displayName}", "id": "data.0.id"},
//	  "roles": {
//	    "assign": {"method": "PUT", "path": "/users/{id}/roles", "body": {"roles": "$role_ids"},
//	               "expect": {"has": ["roles"]}},
//	    "revoke_on_delete": true,          optional, default true
//	    "clear_on_user_delete": true,      optional, default false
//	    "read": "roles"                    optional: where a user listed by users.list holds
//	                                       its role ids (a reconcile compares them)
//	  }
//	}
//
// or, with the roles in a table instead of the lookup (a name from "tables" or an inline
// object, from the key to the role's id; a string or an integer, or null for a group that
// gives no role):
//
//	"tables": {"roles": {"admins": "role_admin", "billing clerks": "role_billing"}},
//	"groups": {"roles": {"table": "roles", "key": "{displayName|trim|lower}",
//	                     "assign": {"method": "PUT", "path": "/users/{id}/roles", "body": {"roles": "$role_ids"}}}}
//
// "key" is a template (see URL templates; transforms included) rendered from the group,
// default "{displayName}"; keys are matched exactly. With the lookup, the groups "lookup"
// call finds the role by the group (its "id" is the role's id; an answer where it matches
// nothing, or the app's own not-found, means no role). Exactly one of the two is given.
//
// What the gateway does:
//
//   - Nothing is created in the app for a group. Its role is found when the group is
//     created, when it is renamed (the role follows the name), and, while it gives none, on
//     each of its changes (the role may have been made in the app since); the role is
//     recorded with the group. Several groups may stand for one role.
//   - A group that gives no role is kept in the directory only: Entra gets its answer,
//     and the change is journaled with outcome "skipped" and the reason.
//   - A change of a group's members sends, for each user it adds or removes, the "assign"
//     call with the user's whole list of roles ($role_ids: every role of every group the
//     user is in, as the change leaves the directory, sorted, each once). When the role a
//     group gives changes (found, renamed to another role or to none), every member's list
//     is sent. A list is never computed from what a change alone says, so adds and removes
//     in different groups each send the full, current list; changes of different groups
//     that share a user send that user's lists one after the other.
//   - A group's delete sends its members' lists without its role ("revoke_on_delete":
//     false for apps that take care of it, or where members keep the role).
//   - A user's delete first sends the user's list as [] when the user has roles
//     ("clear_on_user_delete": true, for apps that refuse to delete, or keep the grants
//     of, a user with roles), then the users "delete" call: one flow, under one intent.
//   - The policy decides on group changes as on any other: a group whose create it skips
//     gives no role, and a member whose addition it skips or drops is left out of the
//     group's role in every list sent later, until removed.
//
// "assign" is one call (not a flow), without a condition, naming the user: {id} is the
// user's native id and SCIM paths are the user's ({userName}); it must send "$role_ids".
// Its answers are checked like any call's: an outage answers Entra 503 and the change's
// retry sends the lists again (a PUT of a whole list may be repeated); the app's 400 is
// Entra's 400; the app's own not-found means the user's account is gone (nothing to set).
// A user added to a group without an account in the app yet is refused (400, as for native
// groups), and Entra retries it later. Groups that are roles have no "events" (a groups
// event beside "roles" is a load error), the users need a create "id" or a lookup, and
// nested groups give their role to their own members only.
//
// # Native ids
//
// The create call's "id" says where its answer gives the new resource's native id
// (Request.ID; IDSource.Extract reads it):
//
//	"id": "user.id"                                  a gjson path in the JSON body
//	"id": {"header": "X-Account-Id"}                 a response header, the whole value
//	"id": {"header": "X-Ref", "pattern": "^acct:(.+)$"}   or the one group of a pattern
//	"id": {"location": "last_segment"}               the Location header's last path segment
//	"id": {"location": "/users/([0-9]+)$"}           or the one group of a pattern on it
//
// A Location id (its last segment, or the pattern's group) is unescaped once, as the URLs
// that name the account escape it again: "/users/a%2Fb" gives the id "a/b", not "b".
// A body id is read after validating the JSON (ExtractID); numbers become their decimal
// text, exactly (9007199254740993.0 is 9007199254740993; a fraction is no id), so 42 and
// "42" are the same id. to_int reads numbers the same way. An id that is empty, longer than 1024 bytes or
// holds a control character (a NUL, a line break) is no usable id, wherever it is read.
// A gjson path that can match nothing (a "#(" query, "[" or "{" left open, a trailing
// "|") fails the load. A create answered without its id (no header, a
// header the pattern does not match) fails with 503, journaled with the reason, and is
// listed for adoption: Entra's retry finds the account with the lookup instead of creating
// a second one. An id from a header therefore needs the resource type's "lookup" (a load
// error otherwise); a lookup's own id is always in its JSON body. A call that uses {id} needs a way to
// learn native ids: an "id" on create or a lookup, else the load fails; member calls need
// the same for the members' resource type, and for groups themselves even when their URL
// does not name {id}: the gateway makes a group's member calls only for a group whose
// account it knows, so add_members and remove_members without a groups create "id" or
// lookup would never be made, and fail the load.
//
// # Lookup
//
// "lookup" is a GET that finds the native resource by a natural key, used to reconcile
// after a crash (adopt an account created just before the gateway could record it):
//
//	"lookup": {"method": "GET", "path": "/api/v1/accounts?login={userName}", "id": "items.0.id"}
//
// Its "id" is required. Only an answer that proves the account absent means "not found":
// the id's path runs into a list that is there but has no such item ("items.0.id" and
// {"items": []}), or the app answers its own "no such object" (expect.not_found). Any other
// answer without the id ({} where the app answers with a list, not JSON, the app's 400 or
// 5xx) is an outage, never a "not found" that would create a second account.
//
// A lookup may read a list instead: "items" is the gjson path of the answer's list, "id"
// the native id's path within an item, and "match" the fields (gjson paths in an item) the
// account's item holds, each a template like a URL's placeholders (compared
// case-insensitively, the first matching item wins; the list must be there, and a matching
// item must hold its id); with "paging" (see Lists) the pages are read until one holds the
// account:
//
//	"lookup": {"method": "GET", "path": "/api/users", "items": "data", "id": "id",
//	           "match": {"login": "{userName|lower}"}, "paging": {"type": "link", "max_pages": 50}}
//
// A lookup that cannot finish (a failed page, a page without its list, more pages than
// max_pages) is an outage, never a "not found" that would create a second account.
//
// # Lists
//
// "list" is a GET of every account of the resource type, for a reconcile of the whole app
// (Mapping.Accounts iterates it page by page, holding one page in memory): "items" is the
// path of each page's list, "id" the native id's path within an item, and "paging" how the
// pages follow each other (legacy.Client.Pages):
//
//	"list": {"method": "GET", "path": "/api/users", "items": "items", "id": "id",
//	         "paging": {"type": "cursor", "cursor": "meta.next", "param": "cursor", "max_pages": 1000}}
//
//	{"type": "link"}                                  the Link header's rel="next", which must
//	                                                  stay under the target's URL
//	{"type": "cursor", "cursor": "meta.next", "param": "cursor"}
//	                                                  the next cursor in the body, sent back in
//	                                                  the query; none (absent, null, "") ends
//	{"type": "page", "param": "page", "start": 1, "size": 50, "size_param": "per_page"}
//	{"type": "offset", "param": "offset", "size": 50, "size_param": "limit"}
//	                                                  a page with no items ends, and so does
//	                                                  one with fewer than size once a page of
//	                                                  size items came (an app that caps its
//	                                                  pages below size is read to its empty
//	                                                  page)
//
// "max_pages" bounds a listing (default 100, at most 100000): reaching it is an error, never
// a silent end. A page that leads back to one read before (a cursor or link that comes
// back, a page number whose page lists the very items of the page before it) is an error
// too, and so is a page without its list at "items" (a proxy's {} is no empty page); the
// error names the page ("page 3: ...").
//
// "total" (any paging) is the gjson path of the app's count of all items, which every page
// must hold (a totalResults: "meta.total"): a count that changes from page to page (the app
// changed while it was read, and offset pages shift past an item), pages whose items do not
// add up to it, or a page without it end the listing with an error, so a listing that ends
// is complete; page and offset paging end as soon as the items add up to it.
//
// "list_members" (groups only) lists the members of one group, page by page, for a
// reconcile of memberships: the same options as "list", with the group's native id, {id},
// as its path's only placeholder, and "id" the member's native id within an item:
//
//	"list_members": {"method": "GET", "path": "/api/v1/teams/{id}/members?limit=200",
//	                 "items": "items", "id": "account_id",
//	                 "paging": {"type": "cursor", "cursor": "next_cursor", "param": "cursor"}}
//
// A reconcile (caddymodule/reconcile) compares each listed account with what the mapping
// would send for the directory's resource (Mapping.Expect): the fields of the update call
// (all of them, as with "send": "all") and the create's fields fed by active (the
// account's state), each read in the listed item at its native path, after the
// transforms. Absent, null and "" are one value; numbers compare by value.
//
// An app that lists its accounts in another shape than it takes them (writes wrapped in
// {"person": {...}}, items flat, or a field under another name) says where with the list's
// "read": each key is a field's native path as the create or update call writes it, each
// value the native path at which a listed item holds it (same syntax: "a\.b" for a key
// holding a dot). Fields not named are read at their own native path; a key that no create
// or update call writes is a load error:
//
//	"list": {"method": "GET", "path": "/v3/people", "items": "data.users", "id": "uid",
//	         "read": {"person.login": "login", "person.job": "job_title"}}
//
// # Answers
//
// Only an answer that proves the call worked counts. Whatever a call's expectation says,
// an HTML page (a sign-in page answered 200, a proxy's or a WAF's error page) is never the
// app's answer, and a body that says it is JSON must be JSON. An answer that does not
// prove success is an outage for Entra (503 with Retry-After): the directory keeps its
// state, the journal records what came back (its media type and size, not its content),
// and Entra retries. The app's own 4xx errors reach Entra as SCIM errors (409 uniqueness,
// 400 invalidValue); a 404 or 410 counts as "already gone" for a delete or a member
// removal, and as "the account is gone" for an update (the mapping is dropped and the
// resource created again), only when it is the app's own not-found answer. An expectation, file-wide or per call:
//
//	{
//	  "status": [200],                success statuses; default: any 2xx
//	  "body": "any",                  "any" (default: anything but HTML), "json",
//	                                  "json_or_empty" or "empty"
//	  "has": ["user.id"],             gjson paths the answer must hold (an echo, an id)
//	  "equals": {"user.state": "suspended", "code": ["A", "B"]},
//	                                  values the answer must hold at paths: a JSON value,
//	                                  or a list of values any of which will do
//	  "errors": {"body": ..., "has": [...], "equals": {...}},
//	                                  the shape of the app's own 4xx errors (default: not
//	                                  HTML); another 4xx is an outage, not passed on
//	  "not_found": {"body": ..., "has": [...], "equals": {...}}
//	                                  the shape of its own "no such object" (default: the
//	                                  errors' shape with a JSON body)
//	}
//
// A create's "id" path is always expected in its answer, so a create answered without one
// is an outage (and listed for adoption: the app may have made the account). A proxy that
// answers {} to everything is caught by "has" or "equals"; give every call that changes
// access (update, deactivate, member calls, delete) an expectation the app's real answer
// meets and an impostor's does not, such as the echo of the changed state:
//
//	"deactivate": {"method": "POST", "path": "/v2/users/{id}/suspend",
//	               "expect": {"equals": {"user.state": "suspended"}}},
//	"delete":     {"method": "DELETE", "path": "/v2/users/{id}",
//	               "expect": {"status": [204], "body": "empty"}}
package mapping
