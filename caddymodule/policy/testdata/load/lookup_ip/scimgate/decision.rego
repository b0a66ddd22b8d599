package scimgate

decision := {"allow": count(net.lookup_ip_addr("example.com")) > 0}
