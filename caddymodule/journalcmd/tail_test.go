package journalcmd

import "testing"

func TestCLICol(t *testing.T) {
	if got := col("a\x1b[31mb\nc"); got != "a?[31mb?c" {
		t.Errorf("col = %q", got)
	}
	if got := col(""); got != "-" {
		t.Errorf("col(\"\") = %q", got)
	}
}
