// Package secret resolves the secrets a config names (passwords, API keys, client secrets)
// from Caddy placeholders or files, refusing secrets written into the config itself: they
// would show in `caddy adapt` output and in the admin API's config. Errors never quote a
// resolved value or a file's content.
package secret

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// onePlaceholder is a value that is exactly one placeholder, such as {env.APP_PASSWORD}.
var onePlaceholder = regexp.MustCompile(`^\{[^{}\s]+\}$`)

// maxFile bounds a secret file.
const maxFile = 64 << 10

// IsPlaceholder reports whether v is exactly one placeholder, such as {env.APP_PASSWORD}.
func IsPlaceholder(v string) bool { return onePlaceholder.MatchString(v) }

// Resolve returns the secret name from its placeholder value or its file (set one, not
// both). scope prefixes errors ("auth", "store").
func Resolve(repl *caddy.Replacer, scope, name, value, file string) (string, error) {
	switch {
	case value != "" && file != "":
		return "", fmt.Errorf("%s: set %s or %s_file, not both", scope, name, name)
	case file != "":
		return readFile(repl, scope, name, file)
	case value == "":
		return "", fmt.Errorf("%s: %s is required: a placeholder such as {env.APP_SECRET}, or %s_file", scope, name, name)
	case !IsPlaceholder(value):
		return "", fmt.Errorf("%s: %s must be a placeholder such as {env.APP_SECRET} or come from %s_file, not be written in the config (it would show in `caddy adapt` and the admin API)", scope, name, name)
	}
	v, err := repl.ReplaceOrErr(value, true, true)
	if err != nil || v == "" {
		return "", fmt.Errorf("%s: %s: %s resolves to nothing (is the variable set?)", scope, name, value)
	}
	return v, nil
}

func readFile(repl *caddy.Replacer, scope, name, file string) (string, error) {
	path := repl.ReplaceAll(file, "")
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: %s_file: %w", scope, name, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return "", fmt.Errorf("%s: %s_file %s: reading: %w", scope, name, path, err)
	}
	if len(data) > maxFile {
		return "", fmt.Errorf("%s: %s_file %s is larger than %d bytes", scope, name, path, maxFile)
	}
	v := strings.TrimRight(string(data), "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s: %s_file %s is empty", scope, name, path)
	}
	return v, nil
}

// Value resolves the placeholders of a value that is not a secret.
func Value(repl *caddy.Replacer, s string) (string, error) {
	if s == "" {
		return "", nil
	}
	v, err := repl.ReplaceOrErr(s, true, true)
	if err != nil {
		return "", fmt.Errorf("%q: %w", s, err)
	}
	return v, nil
}
