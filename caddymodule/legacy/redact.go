package legacy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
)

// Redacted stands where a credential was in an app's message.
const Redacted = "[REDACTED]"

// minSecretLen is the shortest credential value scrubbed by its value: a shorter one would
// cut ordinary words out of messages, and no usable credential is that short.
const minSecretLen = 4

// An app's error page or JSON error that echoes the request (its headers, its body), or its
// own configuration (a connection URL with a password), would otherwise be copied into
// Entra's SCIM error, the journal and the logs. These find what looks like a credential in
// such text, whatever call it answered: an authorization scheme followed by its
// credential, a cookie header line, the user information of a URL, and a name that says
// "credential" (a header line, a JSON member, a query parameter) followed by a value
// without spaces (prose such as "password: must be 8 characters" is kept).
var (
	schemeCredential = regexp.MustCompile(`(?i)\b(bearer|basic|digest|negotiate)(\s+)[A-Za-z0-9\-._~+/]{8,}=*`)
	cookieLine       = regexp.MustCompile(`(?i)\b((?:set-)?cookie)(\s*:\s*)[^\r\n]*`)
	urlUserinfo      = regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/?#@"'<>]+@`)
	namedCredential  = regexp.MustCompile(`(?i)\b((?:proxy-)?authorization|[a-z0-9_.\-]*(?:api[-_]?key|apikey|secret|passw(?:or)?d|pwd|token|session[-_]?id|signature|credentials?))` +
		`(\\?"?\s*[:=]\s*)("(?:[^"\\]|\\.)*"?|'[^']*'?|[^\s,;&"'}\]\[{]+)`)
)

// redactCredentialText replaces credential-looking values in s.
func redactCredentialText(s string) string {
	s = cookieLine.ReplaceAllString(s, "${1}${2}"+Redacted)
	s = urlUserinfo.ReplaceAllString(s, "${1}"+Redacted+"@")
	s = schemeCredential.ReplaceAllString(s, "${1}${2}"+Redacted)
	return namedCredential.ReplaceAllStringFunc(s, func(m string) string {
		sub := namedCredential.FindStringSubmatch(m)
		v, quoted := sub[3], false
		if len(v) > 0 && (v[0] == '"' || v[0] == '\'') {
			v, quoted = strings.Trim(v, `"'`), true
		}
		if len(v) < minSecretLen || strings.Contains(v, Redacted) || strings.ContainsAny(v, " \t\r\n") ||
			(!quoted && !strings.ContainsFunc(v, func(r rune) bool { return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') })) {
			return m
		}
		if quoted {
			return sub[1] + sub[2] + sub[3][:1] + Redacted + sub[3][:1]
		}
		return sub[1] + sub[2] + Redacted
	})
}

// secretsOf lists the credentials req carries, as the app could echo them: the values of
// its credential headers (Authorization, Cookie, an API key's header...) and of its
// credential query parameters, each scheme's credential alone too, and for basic auth
// the decoded user:password and the password.
func secretsOf(req *http.Request) []string {
	var out []string
	add := func(v string) {
		if v = strings.TrimSpace(v); len(v) >= minSecretLen {
			out = append(out, v)
		}
	}
	for name, vals := range req.Header {
		if !credentialName(name) {
			continue
		}
		for _, v := range vals {
			add(v)
			scheme, cred, ok := strings.Cut(strings.TrimSpace(v), " ")
			if !ok {
				continue
			}
			add(cred)
			if strings.EqualFold(scheme, "basic") {
				if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred)); err == nil {
					add(string(dec))
					if _, pass, ok := strings.Cut(string(dec), ":"); ok {
						add(pass)
					}
				}
			}
		}
	}
	if req.URL != nil {
		for name, vals := range req.URL.Query() {
			if credentialName(name) {
				for _, v := range vals {
					add(v)
				}
			}
		}
	}
	return out
}

// credentialName reports whether a header or parameter name says it holds a credential.
func credentialName(name string) bool {
	n := strings.ToLower(name)
	for _, w := range []string{"auth", "cookie", "key", "token", "secret", "passw", "session", "signature", "credential"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// scrubValues replaces every occurrence in body of each secret, as sent and as a JSON
// string would escape it, with Redacted; body is not modified.
func scrubValues(body []byte, secrets []string) []byte {
	if len(secrets) == 0 {
		return body
	}
	forms := make([]string, 0, 3*len(secrets))
	for _, s := range secrets {
		forms = append(forms, s)
		if esc := jsonEscaped(s); esc != s {
			forms = append(forms, esc)
		}
		if strings.Contains(s, "/") {
			forms = append(forms, strings.ReplaceAll(jsonEscaped(s), "/", `\/`))
		}
	}
	// Longest first: a password inside the encoded user:password goes with it.
	slices.SortFunc(forms, func(a, b string) int { return len(b) - len(a) })
	out := body
	for _, f := range forms {
		if bytes.Contains(out, []byte(f)) {
			out = bytes.ReplaceAll(out, []byte(f), []byte(Redacted))
		}
	}
	return out
}

// jsonEscaped is s as it appears inside a JSON string.
func jsonEscaped(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(s) != nil {
		return s
	}
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(b.String(), "\n"), `"`), `"`)
}
