package scimgate

decision := {"allow": allowed} if {
	allowed == true
}
