package journalcmd

import (
	"context"
	"net/http"
	"net/url"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/spf13/cobra"
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

// RunE adapts a scimgate subcommand to cobra through Caddy's wrapper, which logs the error
// and turns a status above 1 into the process's exit code; the journal, outbox and
// reconcile commands all run this way.
func RunE(f func(ctx context.Context, cmd *cobra.Command, args []string) (int, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		code, err := f(ctx, cmd, args)
		return caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) { return code, err })(cmd, args)
	}
}
