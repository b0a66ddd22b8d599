package caddymodule

import (
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"
)

// BenchmarkQueryCost measures what one hostile or careless list/search request costs
// on a directory of 20,000 users and 200 groups, one of them with 50,000 members: CPU
// time, allocations and the size of the answer, per request.
//
//	go test -run xxx -bench QueryCost -benchtime 3x -benchmem ./caddymodule/
//
// Read it by allocations and CPU per request, not wall time (the machine is shared).
func BenchmarkQueryCost(b *testing.B) {
	g := newTestGateway(b, nil)
	ids, _ := benchSeedUsers(b, g, "q", 20_000)
	big := benchCreate(b, g, benchGroupsPath, []byte(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Everyone"}`))
	benchSeedMembers(b, g, big, 50_000)
	for i := range 199 {
		benchCreate(b, g, benchGroupsPath, fmt.Appendf(nil, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"G%d","members":[{"value":%q}]}`, i, ids[i]))
	}
	or64 := make([]string, 64)
	for i := range or64 {
		or64[i] = fmt.Sprintf(`displayName co "zz%d"`, i)
	}
	attrs := make([]string, 100)
	for i := range attrs {
		attrs[i] = fmt.Sprintf("urn:ietf:params:scim:schemas:extension:X:2.0:User:a%d", i)
	}
	nested := strings.Repeat("not (", 15) + `userName co "x"` + strings.Repeat(")", 15)
	cases := []struct{ name, target string }{
		{"users_userName_eq", `/Users?filter=userName eq "bench.q.7@contoso.onmicrosoft.com"`},
		{"users_nofilter_count1", `/Users?count=1`},
		{"users_co_nomatch", `/Users?filter=userName co "nomatch"`},
		{"users_co_all_count200", `/Users?filter=userName co "bench"`},
		{"users_or64_co", `/Users?filter=` + strings.Join(or64, " or ")},
		{"users_not15", `/Users?filter=` + nested},
		{"users_pr_unindexed", `/Users?filter=title pr&count=0`},
		{"users_groups_eq", `/Users?filter=groups.value eq "x"`},
		{"users_attrs100", `/Users?count=200&attributes=` + strings.Join(attrs, ",")},
		{"users_startIndex_huge", `/Users?startIndex=9223372036854775807`},
		{"groups_members_count200", `/Groups`},
		{"groups_excl_members", `/Groups?excludedAttributes=members`},
		{"group_big_get", `/Groups/` + big},
		{"groups_big_by_name", `/Groups?filter=displayName eq "Everyone"`},
		{"groups_big_by_name_excl", `/Groups?filter=displayName eq "Everyone"&excludedAttributes=members`},
		{"groups_member_filter", `/Groups?filter=members.value eq "x"&excludedAttributes=members`},
		{"groups_id_and_member", `/Groups?filter=id eq "` + big + `" and members[value eq "x"]&excludedAttributes=members`},
		{"root_all", `/?count=200`},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			u, err := url.Parse("http://x" + c.target)
			if err != nil {
				b.Fatal(err)
			}
			target := "/scim/v2" + u.Path + "?" + u.Query().Encode()
			if u.Path == "/" {
				target = "/scim/v2?" + u.Query().Encode()
			}
			b.ReportAllocs()
			var peak uint64
			var size int
			cpu0, cpuOK := processCPU()
			for b.Loop() {
				w, err := benchDo(g, http.MethodGet, target, nil, http.StatusOK)
				if err != nil {
					b.Fatal(err)
				}
				size = w.Body.Len()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
			if cpu1, ok := processCPU(); ok && cpuOK && b.N > 0 {
				b.ReportMetric(float64(cpu1-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
			}
			b.ReportMetric(float64(size)/1e6, "resp-MB")
			b.ReportMetric(float64(peak)/1e6, "heapinuse-MB")
		})
	}
}
