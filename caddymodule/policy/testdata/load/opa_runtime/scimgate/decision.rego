package scimgate

decision := {"allow": opa.runtime().env.ALLOW == "1"}
