package scimgate

decision := {"allow": count(input.resource.userName, 2) > 0}
