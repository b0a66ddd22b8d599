package caddymodule

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/scimgate/scimgate/caddymodule/internal/apptest"
)

// Secrets of the app auth tests: none may appear in the adapted config, the log, the
// journal or its export.
const (
	itClientSecret = "it-client-secret-5b7e09"
	itAppPassword  = "it-app-password-c2d4aa"
	itAppKey       = "it-app-key-0f9e33"
)

// appAuthServer runs testdata/appauth/Caddyfile in front of app with the auth block auth.
type appAuthServer struct {
	*itServer
	log string // the log file
}

func startAppAuth(t *testing.T, app *apptest.App, auth string) *appAuthServer {
	t.Helper()
	mapping, err := filepath.Abs(filepath.Join("testdata", "appauth", "mapping.json"))
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	t.Setenv("SCIMGATE_IT_APP", app.URL)
	t.Setenv("SCIMGATE_IT_MAPPING", mapping)
	t.Setenv("SCIMGATE_IT_LOG", logFile)
	t.Setenv("SCIMGATE_IT_AUDIT_TOKEN", testAuditToken)
	t.Setenv("SCIMGATE_IT_CLIENT_SECRET", itClientSecret)
	t.Setenv("SCIMGATE_IT_PASSWORD", itAppPassword)
	t.Setenv("SCIMGATE_IT_KEY", itAppKey)
	tmpl, err := os.ReadFile(filepath.Join("testdata", "appauth", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	caddyfile := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(caddyfile, bytes.Replace(tmpl, []byte("#AUTH#"), []byte(auth), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	s := itStartCaddyfile(t, caddyfile)
	return &appAuthServer{itServer: s, log: logFile}
}

// export reads the journal as JSONL through the audit route.
func (s *appAuthServer) export(t *testing.T) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(s.base, "/scim/v2")+DefaultAuditPath+"/export?format=jsonl", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAuditToken)
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("export: %d %v", resp.StatusCode, err)
	}
	return body
}

// checkNoSecrets greps the adapted config, the log and the journal export (and the
// store file itself) for every secret.
func (s *appAuthServer) checkNoSecrets(t *testing.T) {
	t.Helper()
	logData, err := os.ReadFile(s.log)
	if err != nil {
		t.Fatal(err)
	}
	if len(logData) == 0 {
		t.Fatal("the log is empty: the test would not see a leak")
	}
	store, err := os.ReadFile(filepath.Join(s.dataDir, storeFileName))
	if err != nil {
		t.Fatal(err)
	}
	for what, data := range map[string][]byte{"adapted config": s.cfgJSON, "log": logData, "journal export": s.export(t), "store": store} {
		for _, secret := range []string{itClientSecret, itAppPassword, itAppKey} {
			if bytes.Contains(data, []byte(secret)) {
				t.Errorf("the %s holds a secret", what)
			}
		}
	}
}

func entraUser(name string) string {
	return `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"` + name + `","active":true,"name":{"givenName":"Ada"}}`
}

// TestAppAuthOAuth: through a real Caddy, the gateway fetches one OAuth token for many
// calls, fetches a new one once when the app rejects it (32 concurrent Entra requests
// share that one fetch), and answers Entra 503 with Retry-After, never 401, when the
// token endpoint fails; the journal names the cause; no secret is anywhere.
func TestAppAuthOAuth(t *testing.T) {
	app := apptest.Start(t, apptest.Options{ClientID: "gateway", ClientSecret: itClientSecret, Form: true})
	s := startAppAuth(t, app, `auth oauth2 {
				token_url {$SCIMGATE_IT_APP}/oauth/token
				client_id gateway
				client_secret {env.SCIMGATE_IT_CLIENT_SECRET}
				client_auth body
				scope users.write
			}`)
	for _, name := range []string{"a1@contoso.example", "a2@contoso.example", "a3@contoso.example"} {
		s.do(t, http.MethodPost, "/Users", entraUser(name)).expect(t, http.StatusCreated)
	}
	if n := app.TokenRequests.Load(); n != 1 {
		t.Fatalf("3 creates made %d token requests, want 1", n)
	}
	acc := app.Accounts()
	if len(acc) != 3 || acc["1001"].Get("name[given]") != "Ada" || acc["1001"].Get("active") != "1" {
		t.Fatalf("accounts %v", acc)
	}

	app.Expire() // the app no longer takes the gateway's token
	var wg sync.WaitGroup
	statuses := make(chan int, 32)
	for i := range 32 {
		wg.Go(func() {
			r := sendSCIM(t, s.client, http.MethodPost, s.base+"/Users", entraUser("c"+strings.Repeat("x", i)+"@contoso.example"))
			statuses <- r.status
		})
	}
	wg.Wait()
	close(statuses)
	for st := range statuses {
		if st != http.StatusCreated {
			t.Fatalf("a create after the token expired: %d", st)
		}
	}
	if n := app.TokenRequests.Load(); n != 2 {
		t.Fatalf("32 creates that found the token rejected made %d token requests in all, want 2", n)
	}

	app.Expire()
	app.TokenStatus.Store(http.StatusServiceUnavailable)
	r := s.do(t, http.MethodPost, "/Users", entraUser("late@contoso.example"))
	r.expect(t, http.StatusServiceUnavailable)
	if ra := r.header.Get("Retry-After"); ra != "7" {
		t.Fatalf("Retry-After %q, want the token endpoint's 7", ra)
	}
	if !strings.Contains(string(r.body), "token endpoint answered HTTP 503") {
		t.Fatalf("detail %s does not name the cause", r.body)
	}
	export := s.export(t)
	if !bytes.Contains(export, []byte(`auth: the token endpoint answered HTTP 503`)) {
		t.Fatal("the journal does not name the token endpoint's failure")
	}
	s.checkNoSecrets(t)
}

// TestAppAuthBasicAndAPIKey: basic auth with the password from a file, and an API key in
// the query from the environment, through a real Caddy; no secret anywhere.
func TestAppAuthBasicAndAPIKey(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte(itAppPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		opts apptest.Options
		auth string
	}{
		{"basic", apptest.Options{Auth: apptest.AuthBasic, User: "svc", Password: itAppPassword, Form: true},
			"auth basic {\n username svc\n password_file " + pwFile + "\n}"},
		{"api key in the query", apptest.Options{Auth: apptest.AuthAPIKey, Key: itAppKey, Form: true},
			"auth api_key {\n query api_key\n key {env.SCIMGATE_IT_KEY}\n}"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			app := apptest.Start(t, c.opts)
			s := startAppAuth(t, app, c.auth)
			_, u := s.create(t, "/Users", entraUser("b1@contoso.example"))
			s.do(t, http.MethodPatch, "/Users/"+u["id"].(string), itPatchBody(`{"op":"replace","path":"active","value":false}`)).expect(t, http.StatusOK)
			if acc := app.Accounts(); len(acc) != 1 || acc["1001"].Get("active") != "0" {
				t.Fatalf("accounts %v", acc)
			}
			s.checkNoSecrets(t)
			s.stop(t)
		})
	}
}

// writeClientCert makes a self-signed client certificate (CN scimgate) and writes its
// PEM files; it returns them and a pool that trusts it.
func writeClientCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "scimgate"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile, pool
}

func writePEM(t *testing.T, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestTargetMutualTLS: an app that requires a client certificate gets the one Caddy's
// transport options name (tls_client_auth), with the app's CA trusted (tls_trust_pool);
// without the certificate the handshake fails and Entra gets a 503, not a 401.
func TestTargetMutualTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, clientCAs := writeClientCert(t, dir)
	app := apptest.Start(t, apptest.Options{Auth: apptest.AuthAPIKey, Key: itAppKey, Form: true,
		TLS: &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs, MinVersion: tls.VersionTLS12}})
	caFile := filepath.Join(dir, "app-ca.pem")
	writePEM(t, caFile, "CERTIFICATE", app.Certificate.Raw)
	mapping, err := filepath.Abs(filepath.Join("testdata", "appauth", "mapping.json"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SCIMGATE_TEST_KEY", itAppKey)
	for _, withCert := range []bool{true, false} {
		ca, _ := json.Marshal(map[string]any{"provider": "file", "pem_files": []string{caFile}})
		tlsCfg := &reverseproxy.TLSConfig{CARaw: ca} // tls_trust_pool file <caFile>
		if withCert {
			tlsCfg.ClientCertificateFile, tlsCfg.ClientCertificateKeyFile = certFile, keyFile
		}
		g := newTestGateway(t, func(g *Handler) {
			g.Target = &TargetConfig{Name: "app", URL: app.URL + "/api", Mapping: mapping, MaxRetries: -1,
				Auth:      &AuthConfig{Type: AuthAPIKey, Header: "X-Api-Key", Key: "{env.SCIMGATE_TEST_KEY}"},
				Transport: &reverseproxy.HTTPTransport{TLS: tlsCfg}}
		})
		w := serve(t, g, http.MethodPost, "/scim/v2/Users", entraUser(fmt.Sprintf("mtls-%v@contoso.example", withCert)))
		want := http.StatusCreated
		if !withCert {
			want = http.StatusServiceUnavailable
		}
		if w.Code != want {
			t.Fatalf("client certificate %v: %d %s, want %d", withCert, w.Code, w.Body, want)
		}
	}
	if names := app.ClientNames(); len(names) != 1 || names[0] != "scimgate" || len(app.Accounts()) != 1 {
		t.Fatalf("client certificates seen %v, accounts %d", names, len(app.Accounts()))
	}
}

// TestTargetAuthConfigErrors: a secret written in the JSON config, a missing variable or
// file, and settings of another auth type fail the load, without quoting the secret.
func TestTargetAuthConfigErrors(t *testing.T) {
	mapping, err := filepath.Abs(filepath.Join("testdata", "appauth", "mapping.json"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SCIMGATE_TEST_EMPTY", "")
	cases := []struct {
		auth AuthConfig
		want string
	}{
		{AuthConfig{Type: AuthBasic, Username: "svc", Password: itAppPassword}, "password must be a placeholder"},
		{AuthConfig{Type: AuthBasic, Username: "svc", Password: "{env.SCIMGATE_TEST_EMPTY}"}, "resolves to nothing"},
		{AuthConfig{Type: AuthBasic, Username: "svc", PasswordFile: "/nonexistent/pw"}, "password_file"},
		{AuthConfig{Type: AuthBasic, Username: "svc", Password: "{env.X}", PasswordFile: "/x"}, "not both"},
		{AuthConfig{Type: AuthAPIKey, Header: "X-Key", Key: "{env.HOME}", TokenURL: "https://x"}, "token_url does not apply"},
		{AuthConfig{Type: AuthOAuth2, TokenURL: "https://x/token", ClientID: "a", ClientSecret: itClientSecret}, "client_secret must be a placeholder"},
		{AuthConfig{Type: AuthOAuth2, TokenURL: "https://x/token", ClientID: "a", ClientSecret: "{env.HOME}", ClientAuth: "jwt"}, `client_auth "jwt"`},
		{AuthConfig{Type: "ntlm"}, `unknown type "ntlm"`},
	}
	for _, c := range cases {
		g := &Handler{Tokens: []Token{{Name: "entra", Value: testToken}}, DataDir: t.TempDir(),
			Target: &TargetConfig{Name: "app", URL: "http://127.0.0.1:1/api", Mapping: mapping, Auth: &c.auth}}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := g.Provision(ctx)
		_ = g.Cleanup()
		cancel()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.auth, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), itAppPassword) || strings.Contains(err.Error(), itClientSecret) {
			t.Errorf("the error quotes the secret: %v", err)
		}
	}
}

// TestUnmarshalTargetAuth: each auth kind's Caddyfile form, and its errors.
func TestUnmarshalTargetAuth(t *testing.T) {
	parse := func(auth string) (*AuthConfig, error) {
		g := new(Handler)
		err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser("scim_gateway {\n target app {\n url http://app\n mapping m.json\n " + auth + "\n }\n}"))
		if err != nil {
			return nil, err
		}
		return g.Target.Auth, nil
	}
	ac, err := parse("auth basic {\n username svc\n password {env.APP_PASSWORD}\n }")
	if err != nil || !reflect.DeepEqual(*ac, AuthConfig{Type: AuthBasic, Username: "svc", Password: "{env.APP_PASSWORD}"}) {
		t.Fatalf("basic: %+v, %v", ac, err)
	}
	ac, err = parse("auth api_key {\n query api_key\n key_file /run/secrets/app-key\n }")
	if err != nil || !reflect.DeepEqual(*ac, AuthConfig{Type: AuthAPIKey, Query: "api_key", KeyFile: "/run/secrets/app-key"}) {
		t.Fatalf("api_key: %+v, %v", ac, err)
	}
	ac, err = parse("auth oauth2 {\n token_url https://idp/token\n client_id gw\n client_secret_file /run/secrets/cs\n scope a b\n param resource r1\n param x y\n }")
	if err != nil || ac.ClientSecretFile != "/run/secrets/cs" || len(ac.Scopes) != 2 || len(ac.Params) != 2 {
		t.Fatalf("oauth2: %+v, %v", ac, err)
	}
	for auth, want := range map[string]string{
		"auth":                                            "auth needs a type",
		"auth kerberos {\n }":                             `unknown type "kerberos"`,
		"auth basic {\n password s3cret\n }":              "password must be a placeholder",
		"auth api_key {\n key {env.A}x\n }":               "key must be a placeholder",
		"auth oauth2 {\n client_id a\n client_id b\n }":   "client_id is set twice",
		"auth oauth2 {\n refresh_before soon\n }":         "refresh_before",
		"auth basic {\n username svc\n colour red\n }":    `unrecognized auth option "colour"`,
		"auth basic {\n username svc\n query api_key\n }": "query does not apply",
	} {
		if _, err := parse(auth); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", auth, err, want)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%q: the error quotes the secret: %v", auth, err)
		}
	}
}
