package caddymodule

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/secret"
)

// tokenSet holds the accepted bearer tokens as SHA-256 digests, so every comparison is of
// fixed length and runs in constant time whatever the presented token.
type tokenSet struct {
	tokens []namedDigest
	// failures limits the log lines of failed authentications.
	failures authFailureLog
	// inline names the tokens whose value is written in the config rather than a
	// placeholder: `caddy adapt` and the admin API's GET /config/ show them.
	inline []string
}

// warnInline logs the tokens written in the config itself, once per provisioning: the
// secret is then in the adapted JSON, in Caddy's autosave file and in every answer of
// the admin API's GET /config/.
func (s *tokenSet) warnInline(log *zap.Logger, kind string) {
	if len(s.inline) == 0 {
		return
	}
	log.Warn(kind+" written in the config: `caddy adapt`, the autosaved config and the admin API's GET /config/ show them; use a placeholder such as {env.SCIM_TOKEN} or {file./run/secrets/scim-token}",
		zap.Strings("tokens", s.inline))
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
			return nil, fmt.Errorf("token %q is empty (configured as %q): %s", name, t.Value, setHint(t.Value))
		}
		if why := tokenShapeError(value); why != "" {
			return nil, fmt.Errorf("token %q%s %s: a client sends the token as one word after \"Bearer \", so it could never match; remove it from the variable or file", name, configuredAs(t.Value), why)
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
		if !strings.Contains(t.Value, "{") {
			set.inline = append(set.inline, name)
		}
	}
	return set, nil
}

// tokenShapeError says why a token's value cannot arrive in an Authorization header as
// configured, or "" when it can: HTTP strips the whitespace around a header's value, and
// control characters cannot be sent in one. A token read from a file with a blank line
// at its end, or from a variable with a trailing space, would start the gateway and then
// refuse every request.
func tokenShapeError(v string) string {
	if strings.TrimSpace(v) != v {
		return "starts or ends with whitespace (a space or a line break)"
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return "holds a control character (a tab or a line break)"
		}
	}
	return ""
}

// configuredAs names where a token comes from, for an error: its placeholder, never a
// value written in the config (that is the secret).
func configuredAs(v string) string {
	if secret.IsPlaceholder(strings.TrimSpace(v)) {
		return fmt.Sprintf(" (configured as %q)", strings.TrimSpace(v))
	}
	return ""
}

// Why an authentication failed, for the log (never the token itself).
const (
	authNoHeader     = "no Authorization header"
	authNotBearer    = "the Authorization header is not a bearer token"
	authUnknownToken = "the bearer token is not one of the configured tokens"
	authManyHeaders  = "more than one Authorization header"
)

// authenticate returns the name of the token the request presents, or "" and why not when
// it presents none that is accepted. It compares against every token, so timing does not
// reveal which token (if any) matched.
func (s *tokenSet) authenticate(r *http.Request) (name, failure string) {
	h, failure := authorizationHeader(r)
	if failure != "" {
		return "", failure
	}
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", authNotBearer
	}
	return s.match(strings.TrimSpace(h[len(prefix):]))
}

// authorizationHeader returns the request's one Authorization header, or why there is
// none to take. Authorization is a singleton field (RFC 9110 §11.6.2): with two, a proxy in
// front may have checked one while the gateway would read the other, so neither counts.
func authorizationHeader(r *http.Request) (h, failure string) {
	switch v := r.Header.Values("Authorization"); {
	case len(v) > 1:
		return "", authManyHeaders
	case len(v) == 0 || v[0] == "":
		return "", authNoHeader
	default:
		return v[0], ""
	}
}

// match returns the name of the token whose value is presented, or "" and why not. It
// compares against every token, so timing does not reveal which token (if any) matched.
func (s *tokenSet) match(presented string) (name, failure string) {
	digest := sha256.Sum256([]byte(presented))
	for _, t := range s.tokens {
		if subtle.ConstantTimeCompare(digest[:], t.digest[:]) == 1 {
			name = t.name
		}
	}
	if name == "" {
		return "", authUnknownToken
	}
	return name, ""
}

// Failed authentications are logged at info level, at most authLogBurst lines at once
// and authLogPerMinute a minute after that (a token bucket shared by all clients), so a
// client that floods the gateway with bad tokens cannot flood the log; each line counts
// the failures left out since the line before it.
const (
	authLogBurst     = 10
	authLogPerMinute = 10
)

// authFailureLog is the token bucket deciding which failed authentications are logged.
// The zero value is ready (with a full bucket).
type authFailureLog struct {
	mu         sync.Mutex
	started    bool
	tokens     float64
	last       time.Time
	suppressed int // failures not logged since the last line
}

// note records one failed authentication at now and reports whether to log it, with how
// many failures were left out since the previous line.
func (l *authFailureLog) note(now time.Time) (log bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started {
		l.started, l.tokens, l.last = true, authLogBurst, now
	} else if elapsed := now.Sub(l.last); elapsed > 0 {
		l.tokens = min(authLogBurst, l.tokens+elapsed.Minutes()*authLogPerMinute)
		l.last = now
	}
	if l.tokens < 1 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}

func (s *tokenSet) names() []string {
	out := make([]string, len(s.tokens))
	for i, t := range s.tokens {
		out[i] = t.name
	}
	return out
}

// setHint says how to give an empty token a value: export the variable its {env.*}
// placeholder names, or write one there.
func setHint(configured string) string {
	v := strings.TrimSpace(configured)
	if name, ok := strings.CutPrefix(v, "{env."); ok && strings.HasSuffix(name, "}") && !strings.ContainsAny(name[:len(name)-1], "{}") {
		return "set it, e.g. export " + name[:len(name)-1] + "=$(openssl rand -hex 32)"
	}
	if path, ok := strings.CutPrefix(v, "{file."); ok && strings.HasSuffix(path, "}") && !strings.ContainsAny(path[:len(path)-1], "{}") {
		path = path[:len(path)-1]
		if _, err := os.Stat(path); err != nil {
			return fmt.Sprintf("the file cannot be read (%v): fix the path or create the file with the token", err)
		}
		return "the file " + path + " is empty: write the token into it, e.g. openssl rand -hex 32 > " + path
	}
	return "set it to a secret of at least 32 bytes from {env.*}, e.g. token <name> {env.SCIM_TOKEN}"
}
