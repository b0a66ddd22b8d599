// Package reconcile compares a target's app with the gateway's directory and, on
// request, brings the app back in line: what connector frameworks call aggregation and
// reconciliation, done with the directory, the id map, the mapping and the journal.
//
// A run (Reconciler.Run) reads every account of the app through the mapping's "list"
// calls (users.list, groups.list, and groups.list_members for each linked group; paged and
// rate-limited by the target's client like every other call) and compares each with the
// directory through the id map. Native ids compare exactly, except a GUID, which is the
// same id in either case (an app may answer a create in upper case and list in lower
// case). It reports, as Findings:
//
//	orphaned        an account of the app that is not in the directory, whose resource was
//	                deleted there, or whose resource the policy keeps out of scope while the
//	                account is still active ("(disabled in the app)" when it is not)
//	missing         an active resource of the directory, in scope, with no account in the
//	                app (never created, or gone from the app)
//	not_disabled    inactive in the directory, active in the app
//	drifted         mapped fields whose value in the app is not what the mapping sends for
//	                the directory's current values, compared after the transforms
//	                (mapping.Expect): absent, null and "" are one value, numbers compare
//	                by value, a boolean equals the 0/1 or "True"/"False" an app lists
//	                it as; a state field (fed by active) that says inactive for an active
//	                resource is drift too
//	member_missing  a member of the directory's group that the app's group lacks
//	member_extra    a member of the app's group that the directory's group lacks (an
//	                orphaned account, or a user the directory has elsewhere)
//
// Every run is stored in the store (the newest Options.Keep, default 20, in their own
// bucket; read them with Load) and journaled: one record with action "reconcile", the
// run's id as request_id, "report <id>" as subject and the counts as its changes.
//
// # Bounds
//
// A run holds one page of the app and one batch of the directory at a time: each batch of
// listed accounts (Options.Batch, default 500) is looked up in one short read transaction
// (the reverse id map, the record, its mark), and the missing ones are found by scanning
// the directory in id order in batches of read transactions against a seen set of the
// native ids the app listed, kept as 8-byte hashes: at most 8,192 of them sorted and
// 4,096 newer ones in memory, the rest written out in sorted runs to temporary files (a
// lookup reads one 4 KB block of each; runs of like size are merged, so there are at most
// log2(accounts / 8,192) of them), so the memory a run holds does not grow with the app
// (a group's members likewise, per group). The same set finds an account listed a second
// time (pages that overlap because the app changed while it was read): it is counted and
// compared once, and the report's notes say so. No write transaction is held while the app is
// read: the report is written at the end in one short transaction. The findings a report
// lists are bounded by Options.MaxFindings (default 10,000); the counts are always
// complete. BenchmarkReconcile measures 10,000 and 100,000 accounts.
//
// A listing that fails part-way makes the report incomplete: missing accounts are then
// not reported (they could be on the pages not read) and nothing is repaired.
//
// # Repairs
//
// With fix (Run's argument, `scimgate reconcile --fix`, or FixReport on a stored report),
// the findings the report lists are repaired through the engine (provision.Engine.Repair
// and DisableOrphan): the missing are created (with the memberships the directory holds),
// the not-disabled deactivated, the drifted sent the fields that differ (an update of the
// attributes they are made from; one the directory no longer has is cleared as the
// mapping clears it), and each group's member drift corrected in one repair. Each repair is decided by the policy (input action
// "repair", with its events, so a policy can deny or shape it), counted by the policy's
// stats (the brake), and journaled with its intent and outcome, with the run's id as
// request_id and "reconcile" as client. Orphans are deactivated only with Options.Orphans
// "disable" (the target's `orphans disable`), and never deleted (nor deactivated once the
// id map links the account: a repair of a missing resource run before it may adopt the
// account an orphan turns out to be); an app member without a
// SCIM id (an orphaned account in a group) is reported, not removed.
//
// # Use
//
// In the Caddyfile, on the target (mappings/demoapp.json has the list calls):
//
//	target demo {
//	    url http://127.0.0.1:8081
//	    mapping mappings/demoapp.json
//	    reconcile {
//	        every 24h          # when the newest report is older; default: on request only
//	        fix                # scheduled runs repair too; default: report only
//	        orphans disable    # default report
//	        keep 20
//	        max_findings 10000
//	    }
//	}
//
// From the command line, against the running gateway's admin endpoint:
//
//	scimgate reconcile                      # the report, as a table
//	scimgate reconcile --format csv --output report.csv
//	scimgate reconcile --fix                # repair, then print what was done
//	scimgate reconcile reports              # the stored reports
//	scimgate reconcile show 12 --format json
//	scimgate reconcile fix 12               # the repairs of report 12
//
// or through the admin API (../reconcileadmin): POST /scimgate/reconcile/demo/run?fix=true,
// GET /scimgate/reconcile/demo/reports/12?format=csv.
//
// A field the policy keeps from the app (drop_attributes, as the repair of the account
// would be decided) is not compared. Groups that are the app's roles (groups.roles) are
// compared through the roles each listed user holds, where groups.roles.read says (see
// roles.go).
package reconcile
