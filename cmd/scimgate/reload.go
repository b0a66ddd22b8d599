package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/pflag"
)

// reload is Caddy's reload command (the same flags, the same request to the admin
// endpoint's /load) with the refusal printed as the admin endpoint wrote it: Caddy's
// prints the endpoint's JSON answer inside its own log line, so that a quote in the
// reason comes out as \\\". It returns the exit code.
func reload(args []string, stderr io.Writer) int {
	fs := pflag.NewFlagSet("reload", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.StringP("config", "c", "", "Configuration file (required)")
	adapter := fs.StringP("adapter", "a", "", "Name of config adapter to apply")
	address := fs.String("address", "", "Address of the administration listener, if different from config")
	force := fs.BoolP("force", "f", false, "Force config reload, even if it is the same")
	if err := fs.Parse(args); err != nil {
		return caddy.ExitCodeFailedStartup
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "scimgate reload: unexpected argument %q\n", fs.Arg(0))
		return caddy.ExitCodeFailedStartup
	}
	if err := sendConfig(*configFile, *adapter, *address, *force); err != nil {
		fmt.Fprintf(stderr, "scimgate reload: %s\n", err)
		return caddy.ExitCodeFailedStartup
	}
	return caddy.ExitCodeSuccess
}

// sendConfig adapts the config file and POSTs it to the admin endpoint's /load.
func sendConfig(configFile, adapter, address string, force bool) error {
	config, file, adapterUsed, err := caddycmd.LoadConfig(configFile, adapter)
	if err != nil {
		return err
	}
	if file == "" {
		return fmt.Errorf("no config file to load: give --config")
	}
	admin, err := caddycmd.DetermineAdminAPIAddress(address, config, file, adapter)
	if err != nil {
		return fmt.Errorf("finding the admin endpoint: %w", err)
	}
	headers := http.Header{}
	if force {
		headers.Set("Cache-Control", "must-revalidate")
	}
	headers.Set("Caddy-Config-Source-File", file)
	headers.Set("Caddy-Config-Source-Adapter", adapterUsed)
	resp, err := adminRequest(admin, http.MethodPost, "/load", headers, config)
	if err != nil {
		return fmt.Errorf("the config was refused; the running config stays: %s", adminError(err))
	}
	resp.Body.Close()
	return nil
}

// adminRequest is caddycmd.AdminAPIRequest, tried again when no answer came back. Right
// after a load, Caddy replaces its admin server and shuts the old one down in the
// background: a connection the old one accepted in that moment is reset before the
// request is read, so it is safe to send again (an answer, even an error, is final).
func adminRequest(admin, method, path string, headers http.Header, body []byte) (*http.Response, error) {
	const attempts = 5
	for i := 1; ; i++ {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		resp, err := caddycmd.AdminAPIRequest(admin, method, path, headers, rd)
		if err == nil || i == attempts || !strings.HasPrefix(err.Error(), "performing request:") {
			return resp, err
		}
		time.Sleep(time.Duration(i) * 50 * time.Millisecond)
	}
}

// adminError is the reason in the admin endpoint's answer (its JSON body, which
// AdminAPIRequest puts at the end of its error), or the error as it is.
func adminError(err error) string {
	msg := err.Error()
	i := strings.Index(msg, "{")
	if i < 0 {
		return msg
	}
	var body struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(strings.TrimSpace(msg[i:])), &body) != nil || body.Error == "" {
		return msg
	}
	return body.Error
}
