package gwconfig

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestMisspeltOptionIsNamed: a misspelt option in a target, auth, journal or reconcile
// block is reported as an unknown option with the ones the block has, whatever number of
// arguments it was given, and never as "wrong argument count" for the option it was not.
func TestMisspeltOptionIsNamed(t *testing.T) {
	target := func(body string) string {
		return "target app {\n url http://127.0.0.1:1\n mapping m.json\n " + body + "\n}"
	}
	for _, tt := range []struct{ input, want string }{
		{target("headr X-Api-Key k"), `unrecognized target option "headr" (want url, mapping, header,`},
		{target("dryrun"), `unrecognized target option "dryrun"`},
		{target("mapings a.json b.json"), `unrecognized target option "mapings"`},
		{target("auth basic {\n username u\n pasword_file a b\n }"), `unrecognized auth option "pasword_file" (want username, password, password_file,`},
		{target("auth oauth2 {\n scopes a b\n }"), `unrecognized auth option "scopes"`},
		{target("reconcile {\n evry\n }"), `unrecognized reconcile option "evry" (want every, fix, orphans, keep or max_findings)`},
		{target("reconcile {\n fixx\n }"), `unrecognized reconcile option "fixx"`},
		{"journal {\n redac password name\n}", `unrecognized journal option "redac" (want name,`},
		{"journal {\n read\n}", `unrecognized journal option "read"`},
	} {
		d := caddyfile.NewTestDispenser(tt.input)
		d.Next()
		var err error
		if d.Val() == "target" {
			_, err = ParseTarget(d)
		} else {
			_, err = ParseJournal(d)
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q:\n got %v\nwant %q", tt.input, err, tt.want)
		}
	}
}
