# A small policy that reads every kind of data the engine mounts.
package scimgate

default decision := {"allow": false, "reasons": ["no action in input"]}

decision := {
	"allow": true,
	"reasons": [data.scimgate.config.greeting, data.global.name, extra],
	"drop_attributes": data.scimgate.config.drop,
} if {
	input.action != ""
	print("deciding", input.action, "for", input.client)
}

default extra := "no extra data"

extra := data.extra.flag
