// Package demoapp is a deliberately non-SCIM "legacy" REST application, packaged as the
// Caddy HTTP handler http.handlers.scimgate_demo_app (Caddyfile directive
// scimgate_demo_app). scimgate's gateway provisions it by rewriting SCIM changes into its
// native calls, so the demo and the integration tests need no third-party app.
//
// It is built into cmd/scimgate but not into the xcaddy.sh production build (which pulls in
// caddymodule only); caddymodule must never import it. It is a test fixture: state lives in
// memory and is lost when the process exits, unless state_file names a file to keep it in.
//
// # Why it looks the way it does
//
// Every choice below differs from SCIM on purpose, so that each part of a mapping file is
// exercised for real:
//
//   - Auth: an API key in the X-Api-Key header (not a bearer token). The key comes from the
//     config and may be a placeholder such as {env.SCIMGATE_DEMO_KEY}; it must not be empty
//     after resolution. A missing or wrong key is a 401.
//
//   - Ids: integers assigned by the app, auto-incremented, never reused (until _reset).
//
//   - Accounts (users) are shaped unlike SCIM's User:
//
//     {"id":17,"login":"ada@contoso.example",
//     "person":{"first":"Ada","last":"Lovelace","display":"Ada Lovelace"},
//     "contact":{"mail":"ada@contoso.example","phone":"+44 20 7946 0000"},
//     "org":{"dept":"R&D","title":"Analyst","employee_no":"E-1","manager_id":12},
//     "locked":false,"created_at":"2025-03-01T12:00:00.000Z","updated_at":"..."}
//
//     Every field is always present; "" means not set, manager_id is null when unset.
//     login is required, unique case-insensitively (409 DUPLICATE_LOGIN), at most 256
//     bytes, without white space. contact.mail, when set, must look like local@domain.
//     org.manager_id must name another existing account (422 otherwise); deleting a
//     manager clears manager_id on the accounts it managed.
//
//   - No active flag: locked changes only through POST .../lock and .../unlock, which are
//     idempotent (locking a locked account is a 200 that changes nothing, not even
//     updated_at). POST /accounts may create an account already locked ("locked":true);
//     PUT and PATCH refuse the field (400 READ_ONLY_FIELD). id, created_at and updated_at
//     are read-only everywhere.
//
//   - Updates: PATCH is a JSON merge patch (RFC 7396): objects merge, null clears. PUT
//     replaces every writable field (missing ones become empty). Unknown fields are refused
//     (400 VALIDATION_FAILED naming the field), so that a mapping typo is found at once
//     instead of being silently dropped.
//
//   - Teams (groups): {"id":3,"name":"Engineering","description":"","member_count":2,...}.
//     name is unique case-insensitively (409 DUPLICATE_TEAM_NAME). Members are a
//     sub-resource, never inlined: PUT /teams/{id}/members/{accountId} adds (idempotent,
//     204; 422 UNKNOWN_ACCOUNT if the account does not exist), DELETE removes (204; 404
//     NOT_A_MEMBER if it was not a member), and POST /teams/{id}/members:batch with
//     {"add":[ids],"remove":[ids]} changes many at once, atomically (if any added account is
//     unknown, nothing changes; adding a member or removing a non-member is not an error;
//     the reply counts what changed). Deleting an account removes it from every team.
//
//   - Bulk creates: POST /accounts:batch with {"accounts":[...]} and POST /teams:batch with
//     {"teams":[...]}, 1 to 1000 items each shaped as the single create's body, create or
//     refuse each item on its own, in order, and answer 200 with one result per item at its
//     position: {"results":[{"id":17,"login":"..."},{"login":"...","error":{"code":
//     "DUPLICATE_LOGIN","message":"..."}}]} (teams: "name"). A batch that would pass a limit
//     creates nothing (507). mappings/demoapp.json declares them as create_batch, which
//     queued delivery uses.
//
//   - Lists use cursor pagination: {"items":[...],"next_cursor":"..."} with next_cursor null
//     on the last page. Cursors are opaque and bound to their list; limit is 1..200,
//     default 50. GET /accounts?login=<exact, case-insensitive> and GET /teams?name=... find
//     a record by its natural key (zero or one item), which is how the gateway reconciles
//     after a crash.
//
//   - Errors have the app's own format, {"error":{"code":"DUPLICATE_LOGIN","message":"..."}}
//     with the codes listed as Code* constants: 400 (malformed JSON, validation, read-only
//     field, bad cursor), 401, 404 (unknown id or route), 405, 409 (uniqueness), 413 (body
//     over 1 MiB), 415 (Content-Type not JSON; a missing one is taken as JSON), 422
//     (semantic: unknown member or manager), 507 (a configured limit is reached). No valid
//     or invalid input produces a 500.
//
//   - Inspection: GET /api/v1/_state dumps all accounts, teams and memberships sorted by id
//     (the integration test compares it with the gateway's directory) and "calls", how many
//     API calls the app answered (the benchmarks count a gateway's native calls with it);
//     POST /api/v1/_reset empties the state, the count too, and restarts the ids at 1. Both
//     need the API key and neither is counted.
//
// # State and limits
//
// The state is held in memory behind one mutex, so every request is atomic. It is bounded by
// max_accounts and max_teams (default 100000 each) and max_memberships (default 1000000),
// and request bodies by 1 MiB. States are pooled by name (default "default") in a
// caddy.UsagePool: a config reload keeps the data, and two handlers with the same name share
// it. Requests outside /api/v1 are passed to the next handler.
//
// With `state_file <path>` (Caddyfile.example keeps it beside the gateway's store) the state
// survives restarts and crashes, as a real app's database does: each change the app answers
// with success is appended to a log and synced before the answer is sent, and a snapshot
// beside it is rewritten (a new file, synced and renamed over the old one, readable by its
// owner only) when the log outgrows it and when the state's last handler goes. A restart,
// or a kill -9, then finds every change the app answered, with its ids and timestamps, so
// the gateway's directory and the app still agree; a change it never answered is not there.
// Files the app could not have written (another format, a duplicate login, a manager or
// member that does not exist, a logged change that does not apply again) fail provisioning,
// naming the file, and are left as they are. persist.go has the layout.
//
// # Latency
//
// Legacy apps take their time; `latency 20ms` makes every authorised answer wait 20 ms, and
// `latency 10ms 100ms` a uniformly distributed time in that range (at most a minute). A
// client that goes away while the app waits gets nothing done: the request is dropped
// before it touches the state. cmd/gatewaybench's -app-latency sets it on both of its apps.
package demoapp
