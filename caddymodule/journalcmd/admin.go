package journalcmd

import (
	"context"
	"net/http"
	"net/url"
)

// AdminRequest makes one request to the admin endpoint at addr as the journal command
// does (over TCP or a unix socket, with the Origin the endpoint expects), for scimgate's
// other commands. An answer outside 2xx and okStatus is an error carrying the endpoint's
// message; the caller closes the body of the answer it gets. The outbox and reconcile
// commands use it.
func AdminRequest(ctx context.Context, addr, method, path string, q url.Values, okStatus ...int) (*http.Response, error) {
	a, err := newAdminClient(addr)
	if err != nil {
		return nil, err
	}
	return a.do(ctx, method, path, q, okStatus...)
}
