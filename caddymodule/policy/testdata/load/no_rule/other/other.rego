package other

decision := {"allow": true}
