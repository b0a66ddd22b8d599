package gwconfig

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ParsePublicURL checks a public_url and returns it as scheme://host[:port], the origin
// that BasePath is appended to.
func ParsePublicURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("public_url %q: %w", raw, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("public_url %q: want an absolute http or https URL such as https://scim.example.com", raw)
	case u.Host == "" || u.Hostname() == "":
		return "", fmt.Errorf("public_url %q has no host", raw)
	case u.User != nil:
		return "", errors.New("public_url must not hold user information (not quoted here: it may be a password)")
	case u.Path != "" && u.Path != "/", u.RawPath != "":
		return "", fmt.Errorf("public_url %q has a path; give only scheme://host[:port], base_path is appended to it", raw)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#"):
		return "", fmt.Errorf("public_url %q must not have a query or fragment", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}
