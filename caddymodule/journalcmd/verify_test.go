package journalcmd

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

func TestCLILoadPublicKey(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, value string
		ok          bool
	}{
		{"empty", "", true},
		{"base64", base64.StdEncoding.EncodeToString(pub), true},
		{"base64url raw", base64.RawURLEncoding.EncodeToString(pub), true},
		{"hex", hex.EncodeToString(pub), true},
		{"PKIX base64", base64.StdEncoding.EncodeToString(der), true},
		{"PEM file", write("pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), true},
		{"base64 file", write("pub.b64", []byte(base64.StdEncoding.EncodeToString(pub)+"\n")), true},
		{"short", base64.StdEncoding.EncodeToString(pub[:31]), false},
		{"garbage", "not a key", false},
		{"big file", write("big", bytes.Repeat([]byte("A"), 70<<10)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadPublicKey(tt.value)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v", err)
			}
			if tt.ok && tt.value != "" && !got.Equal(pub) {
				t.Errorf("key = %x, want %x", got, pub)
			}
		})
	}
}
