# The default decision: every change passes, with no obligations. The guardrail policies
# (attribute allowlists, privileged groups, scoping, break-glass accounts, the
# mass-deprovision brake) build on this document; see the README's "Policy" section.
package scimgate

default decision := {
	"allow": true,
	"skip": false,
	"reasons": [],
	"drop_attributes": [],
	"drop_members": [],
}
