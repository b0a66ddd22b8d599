package scimgate

decision := {"allow": true}
