package scimgate

decision := {"allow": true

other := 1
