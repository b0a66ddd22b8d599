package query

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// BenchmarkOrFilter compares an or of indexed equalities served by index lookups with the
// same filter answered by a full scan (not (not (...)), which no index serves), on 20,000
// users written as the gateway writes them.
//
//	go test -run xxx -bench OrFilter -benchmem ./caddymodule/query/
//
// Read it by allocations and CPU per query, not wall time (the machine is shared).
func BenchmarkOrFilter(b *testing.B) {
	const users = 20_000
	s, err := store.Open(filepath.Join(b.TempDir(), "dir.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	if err := s.Update(func(tx *store.Tx) error {
		for i := range users {
			p, err := scim.PrepareResource(scim.UserType, map[string]any{
				"userName": fmt.Sprintf("bench.%d@contoso.onmicrosoft.com", i), "externalId": fmt.Sprintf("ext-%d", i),
				"displayName": fmt.Sprintf("Bench %d", i), "active": true, "title": "Engineer",
				"emails": []any{map[string]any{"value": fmt.Sprintf("bench.%d@contoso.example", i), "type": "work", "primary": true}},
			})
			if err != nil {
				return err
			}
			doc, err := json.Marshal(p.Doc)
			if err != nil {
				return err
			}
			if err := tx.Put(&store.Record{Type: scim.UserType, ID: fmt.Sprintf("%08x-user", i*7919%users), Doc: doc,
				Index: provision.IndexEntries(scim.UserType, p.Doc)}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, filter string }{
		{"userName_or_userName", `userName eq "bench.7@contoso.onmicrosoft.com" or userName eq "BENCH.19999@contoso.onmicrosoft.com"`},
		{"externalId_or_userName", `externalId eq "ext-12345" or userName eq "bench.42@contoso.onmicrosoft.com"`},
		{"or8_mixed", `userName eq "bench.1@contoso.onmicrosoft.com" or userName eq "bench.2@contoso.onmicrosoft.com" or ` +
			`externalId eq "ext-3" or externalId eq "ext-4" or emails.value eq "bench.5@contoso.example" or ` +
			`(userName eq "bench.6@contoso.onmicrosoft.com" and active eq true) or userName eq "nobody" or externalId eq "ext-1"`},
	} {
		for _, plan := range []struct{ name, filter string }{{"indexed", c.filter}, {"scan", "not (not (" + c.filter + "))"}} {
			q, err := Parse(scim.UserType, Params{Filter: plan.filter}, 100)
			if err != nil {
				b.Fatal(err)
			}
			if q.Scans() != (plan.name == "scan") {
				b.Fatalf("%s %s: Scans = %v", c.name, plan.name, q.Scans())
			}
			b.Run(c.name+"/"+plan.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := s.View(func(tx *store.Tx) error {
						_, total, err := q.Run(tx, storedRenderer{})
						if err == nil && total == 0 {
							err = fmt.Errorf("no match")
						}
						return err
					}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
