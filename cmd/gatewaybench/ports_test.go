package main

import "github.com/scimgate/scimgate/internal/testnet"

// The rig's Caddy binds with SO_REUSEPORT: under `go test ./...` its ports are claimed as
// every test server's are (testnet), so that another package's Caddy is not handed one.
func init() { freeAddrs = testnet.FreeAddrsHeld }
