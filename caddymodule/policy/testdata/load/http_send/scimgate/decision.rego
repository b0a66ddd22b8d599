package scimgate

decision := {"allow": resp.status_code == 200} if {
	resp := http.send({"method": "GET", "url": "https://example.com/allowed"})
}
