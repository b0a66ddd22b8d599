package caddymodule

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// tokenSet holds the accepted bearer tokens as SHA-256 digests, so every comparison is of
// fixed length and runs in constant time whatever the presented token.
type tokenSet struct {
	tokens []namedDigest
}

type namedDigest struct {
	name   string
	digest [sha256.Size]byte
}

func newTokenSet(tokens []Token, repl *caddy.Replacer) (*tokenSet, error) {
	if len(tokens) == 0 {
		return nil, fmt.Errorf("scim_gateway needs at least one token (token <name> {env.SCIM_TOKEN})")
	}
	set := &tokenSet{}
	seenNames := map[string]bool{}
	seenValues := map[[sha256.Size]byte]string{}
	for i, t := range tokens {
		name := strings.TrimSpace(t.Name)
		if name == "" {
			return nil, fmt.Errorf("token %d has no name; give each token a name for the logs", i+1)
		}
		if seenNames[name] {
			return nil, fmt.Errorf("token name %q is used twice", name)
		}
		seenNames[name] = true
		value := repl.ReplaceAll(t.Value, "")
		if value == "" {
			return nil, fmt.Errorf("token %q is empty (configured as %q): set it, e.g. export SCIM_TOKEN=$(openssl rand -hex 32)", name, t.Value)
		}
		if len(value) < MinTokenBytes {
			return nil, fmt.Errorf("token %q is %d bytes; tokens must be at least %d bytes (e.g. openssl rand -hex 32)", name, len(value), MinTokenBytes)
		}
		d := sha256.Sum256([]byte(value))
		if other, dup := seenValues[d]; dup {
			return nil, fmt.Errorf("tokens %q and %q have the same value", other, name)
		}
		seenValues[d] = name
		set.tokens = append(set.tokens, namedDigest{name: name, digest: d})
	}
	return set, nil
}

// authenticate returns the name of the token the request presents, or "" when it presents
// none that is accepted. It compares against every token, so timing does not reveal which
// token (if any) matched.
func (s *tokenSet) authenticate(r *http.Request) string {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return ""
	}
	presented := sha256.Sum256([]byte(strings.TrimSpace(h[len(prefix):])))
	match := ""
	for _, t := range s.tokens {
		if subtle.ConstantTimeCompare(presented[:], t.digest[:]) == 1 {
			match = t.name
		}
	}
	return match
}

func (s *tokenSet) names() []string {
	out := make([]string, len(s.tokens))
	for i, t := range s.tokens {
		out[i] = t.name
	}
	return out
}
