package journalcmd_test

import (
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/internal/journaltest"
	"github.com/scimgate/scimgate/caddymodule/journalcmd"
)

// TestCLIVerifyWhatAnAuditorGets: what `journal verify --file` says of the files an
// auditor is handed. CSV and OCSF exports cannot be verified, and say so (a CSV was
// opened as a bbolt file, "a running gateway holds its live file: use a backup"); a JSONL
// export of another journal than --journal names is not taken for it (the name was
// ignored for exports, and the OK line did not name the journal); a filtered export
// verifies only as the subset asked for (--subset), and with the key only where signed
// checkpoints cover its records.
func TestCLIVerifyWhatAnAuditorGets(t *testing.T) {
	e := journaltest.Start(t)
	journaltest.Seed(t, e)
	e.Checkpoint(t)
	pubB64 := base64.StdEncoding.EncodeToString(e.Pub)
	dir := t.TempDir()
	backup := filepath.Join(dir, "backup.db")
	if code, _, stderr := journaltest.Run(t, "backup", "--admin", e.Admin, "--output", backup); code != 0 {
		t.Fatalf("backup: exit %d: %s", code, stderr)
	}
	export := func(name string, args ...string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if code, _, stderr := journaltest.Run(t, append([]string{"export", "--file", backup, "--output", path}, args...)...); code != 0 {
			t.Fatalf("export %v: exit %d: %s", args, code, stderr)
		}
		return path
	}

	for format, mention := range map[string]string{"csv": "a CSV export cannot be verified", "ocsf": "an OCSF export cannot be verified"} {
		path := export("all."+format, "--format", format)
		err := journaltest.Err(t, "verify", "--file", path, "--public-key", pubB64)
		if err == nil || journaltest.ExitCode(err) != 1 || !strings.Contains(err.Error(), mention) {
			t.Errorf("verify of a %s export: %v (exit %d), want exit 1 mentioning %q", format, err, journaltest.ExitCode(err), mention)
		}
	}

	all := export("all.jsonl")
	err := journaltest.Err(t, "verify", "--file", all, "--journal", "payroll", "--public-key", pubB64)
	if err == nil || journaltest.ExitCode(err) != 1 || !strings.Contains(err.Error(), `is of journal "audit", not "payroll"`) {
		t.Errorf("verify --journal payroll of journal audit's export: %v (exit %d)", err, journaltest.ExitCode(err))
	}
	code, out, _ := journaltest.Run(t, "verify", "--file", all, "--journal", journaltest.JournalName, "--public-key", pubB64)
	if code != 0 || !strings.HasPrefix(out, "OK: journal "+journaltest.JournalName+" in "+all+" verifies") {
		t.Errorf("verify --journal of its own journal: exit %d: %q", code, out)
	}

	bob := export("bob.jsonl", "--user-name", "bob@example.com")
	code, out, _ = journaltest.Run(t, "verify", "--file", bob)
	if code != journalcmd.ExitNotVerified || !strings.Contains(out, "(deleted)") || !strings.Contains(out, "--subset") {
		t.Errorf("a filtered export verified as a whole: exit %d: %q", code, out)
	}
	code, out, _ = journaltest.Run(t, "verify", "--file", bob, "--subset")
	if code != 0 || !strings.Contains(out, "a filtered subset: links across left-out records not checked, and it cannot show that none its filter selects was left out") {
		t.Errorf("a filtered export as a subset: exit %d: %q", code, out)
	}
	code, out, _ = journaltest.Run(t, "verify", "--file", bob, "--subset", "--public-key", pubB64)
	if code != journalcmd.ExitNotVerified || !strings.Contains(out, "(unvouched)") || !strings.Contains(out, "verify an unfiltered export to prove them") {
		t.Errorf("a filtered export as a subset, with the key: exit %d: %q", code, out)
	}
}
