package caddymodule

import (
	"bytes"
	"encoding/json"
	"testing"
)

func caddyconfigIndent(t *testing.T, data []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, data, "", "\t"); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}
