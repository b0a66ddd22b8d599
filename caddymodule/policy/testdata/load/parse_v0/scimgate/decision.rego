package scimgate

decision = {"allow": true} { input.action == "create" }
