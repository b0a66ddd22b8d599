package journal

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
)

// ParsePublicKey reads an Ed25519 public key that verifies checkpoints: PEM (PUBLIC KEY),
// or base64 or hex of the 32-byte key or of its PKIX encoding. Surrounding whitespace is
// ignored.
func ParsePublicKey(text []byte) (ed25519.PublicKey, error) {
	text = bytes.TrimSpace(text)
	if block, _ := pem.Decode(text); block != nil {
		return parseKeyBytes(block.Bytes)
	}
	s := string(text)
	for _, dec := range []func(string) ([]byte, error){
		base64.StdEncoding.DecodeString, base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString, base64.RawURLEncoding.DecodeString, hex.DecodeString,
	} {
		if b, err := dec(s); err == nil {
			if pub, err := parseKeyBytes(b); err == nil {
				return pub, nil
			}
		}
	}
	return nil, errors.New("not an Ed25519 public key (want PEM, base64 or hex)")
}

func parseKeyBytes(b []byte) (ed25519.PublicKey, error) {
	if len(b) == ed25519.PublicKeySize {
		return ed25519.PublicKey(b), nil
	}
	k, err := x509.ParsePKIXPublicKey(b)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an Ed25519 key", k)
	}
	return pub, nil
}
