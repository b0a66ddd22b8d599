package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
)

// The `journal` command: every Caddy built with this module can verify, export, back up
// and follow the audit journal, either through a running instance's admin API (the routes
// in admin.go) or on a backup file, never by opening the live database, which the running
// instance holds locked.

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "journal",
		Usage: "verify|export|backup|tail|watch [--admin <host:port> | --file <path>] [--journal <name>]",
		Short: "Verifies, exports, backs up, follows and watches scimgate's audit journal",
		Long: `
Works on the audit journal of a running scimgate through its admin endpoint
(--admin, default ` + caddy.DefaultAdminListen + `), or on a backup file (--file),
read-only. The live database is never opened: the running instance holds it.

  journal verify  [--public-key <file|base64>]
      Checks the hash chain and the checkpoints, prints one line and exits 0
      when the journal verifies, ` + strconv.Itoa(cliExitNotVerified) + ` when it does not (naming the
      first bad sequence number), 1 when it could not be checked. Through
      --admin without --public-key the instance verifies with its configured
      key; with --public-key the journal is exported and verified here, with
      your copy of the key. --file takes a backup or a JSONL export.

  journal export  [--format jsonl|csv|ocsf] [--from <RFC 3339>] [--to <RFC 3339>]
                  [--from-seq <n>] [--to-seq <n>] [--scim-id <id>]
                  [--user-name <userName>] [--outcome <outcome>] [--output <file>]
      Writes the selected records (default: all, as JSONL, to stdout). JSONL is
      the verifiable form; CSV and OCSF are for spreadsheets and SIEMs.

  journal backup  --output <file>
      Downloads a consistent snapshot of the running instance's store (the
      directory and the journal): a file that --file accepts.

  journal tail    [-n <count>] [--resource-type <type>] [--user-name <userName>]
                  [--outcome <outcome>] [--json]
      Through --admin, prints the last n records and then follows new ones as
      they commit, until interrupted. With --file, prints the last n records.

  journal watch   [--listen <127.0.0.1:0>] [--open]
      Through --admin, serves the journal's live web page on a loopback address
      and prints the URL to open in a browser, until interrupted. The admin
      endpoint refuses pages typed into a browser's address bar (they carry no
      Origin it allows); watch serves only that page and its live stream, GET
      only, and forwards them with the admin endpoint's own origin. --open also
      starts the default browser on it.

--journal names the journal when the instance has several (default: the only one).
`,
		CobraFunc: cliSetup,
	})
}

// cliExitNotVerified is the exit status of a verification that ran and failed (sysexits'
// EX_DATAERR), so scripts can tell a tampered journal from one that could not be checked
// (status 1).
const cliExitNotVerified = 65

// cliSetup adds the subcommands and their flags to the journal command.
func cliSetup(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.String("admin", caddy.DefaultAdminListen, "Address of the running instance's admin endpoint")
	pf.String("file", "", "A backup file (or, for verify, a JSONL export) to read instead")
	pf.String("journal", "", "Journal name, when the instance has several")
	cmd.MarkFlagsMutuallyExclusive("admin", "file")

	verify := &cobra.Command{
		Use:   "verify [--admin <host:port> | --file <path>] [--public-key <file|base64>]",
		Short: "Verifies the journal's hash chain and checkpoints",
		Args:  cobra.NoArgs,
		RunE:  cliRunE(cliVerify),
	}
	verify.Flags().String("public-key", "", "Ed25519 public key that signs the checkpoints: a file (PEM or base64) or base64")
	cmd.AddCommand(verify)

	export := &cobra.Command{
		Use:   "export [--admin <host:port> | --file <path>] [--format jsonl|csv|ocsf] [filters] [--output <file>]",
		Short: "Exports journal records as JSONL, CSV or OCSF",
		Args:  cobra.NoArgs,
		RunE:  cliRunE(cliExport),
	}
	ef := export.Flags()
	ef.String("format", string(journal.FormatJSONL), "jsonl, csv or ocsf")
	ef.String("from", "", "First time (RFC 3339)")
	ef.String("to", "", "Last time (RFC 3339)")
	ef.String("from-seq", "", "First sequence number")
	ef.String("to-seq", "", "Last sequence number")
	ef.String("scim-id", "", "Only records about this SCIM id")
	ef.String("user-name", "", "Only records about this userName")
	ef.String("outcome", "", "Only records with this outcome (applied, rejected, denied, failed, ...)")
	ef.StringP("output", "o", "-", "Output file; - is stdout")
	cmd.AddCommand(export)

	backup := &cobra.Command{
		Use:   "backup --output <file> [--admin <host:port>]",
		Short: "Downloads a consistent snapshot of the running instance's store",
		Args:  cobra.NoArgs,
		RunE:  cliRunE(cliBackup),
	}
	backup.Flags().StringP("output", "o", "", "Output file (required); - is stdout")
	cmd.AddCommand(backup)

	tail := &cobra.Command{
		Use:   "tail [--admin <host:port> | --file <path>] [-n <count>] [filters] [--json]",
		Short: "Prints the newest records and follows new ones as they commit",
		Args:  cobra.NoArgs,
		RunE:  cliRunE(cliTail),
	}
	tf := tail.Flags()
	tf.IntP("lines", "n", 10, "How many past records to print first")
	tf.String("resource-type", "", "Only records about this resource type (User, Group)")
	tf.String("user-name", "", "Only records about this userName")
	tf.String("outcome", "", "Only records with this outcome")
	tf.Bool("json", false, "Print records as JSON lines instead of columns")
	cmd.AddCommand(tail)

	watch := &cobra.Command{
		Use:   "watch [--admin <host:port>] [--journal <name>] [--listen <host:port>] [--open]",
		Short: "Serves the journal's live web page on a loopback address for a browser",
		Args:  cobra.NoArgs,
		RunE:  cliRunE(cliWatch),
	}
	wf := watch.Flags()
	wf.String("listen", cliWatchDefaultListen, "Loopback address to serve the page on (port 0: any free port)")
	wf.Bool("open", false, "Also open the page in the default browser")
	cmd.AddCommand(watch)
}

// cliFunc runs one subcommand. It returns the exit status and an error to report.
type cliFunc func(ctx context.Context, c *cliEnv) (int, error)

// cliEnv is what a subcommand works with.
type cliEnv struct {
	flags  caddycmd.Flags
	stdout io.Writer
	stderr io.Writer
}

// cliRunE adapts f to cobra through Caddy's wrapper, which logs the error and turns a
// status above 1 into the process's exit code.
func cliRunE(f cliFunc) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		env := &cliEnv{flags: caddycmd.Flags{FlagSet: cmd.Flags()}, stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr()}
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		code, err := f(ctx, env)
		return caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) { return code, err })(cmd, args)
	}
}

// cliFail is the result of a command that could not do its work.
func cliFail(format string, args ...any) (int, error) {
	return caddy.ExitCodeFailedStartup, fmt.Errorf(format, args...)
}

// source returns the backup file to read, or "" to use the admin endpoint.
func (c *cliEnv) source() string { return c.flags.String("file") }

// admin returns a client of the admin endpoint.
func (c *cliEnv) admin() (*cliAdmin, error) { return cliNewAdmin(c.flags.String("admin")) }

// adminJournal connects to the admin endpoint and resolves the journal to work on.
func (c *cliEnv) adminJournal(ctx context.Context) (*cliAdmin, string, error) {
	a, err := c.admin()
	if err != nil {
		return nil, "", err
	}
	name, err := a.journalName(ctx, c.flags.String("journal"))
	if err != nil {
		return nil, "", err
	}
	return a, name, nil
}

// --- verify ---

func cliVerify(ctx context.Context, c *cliEnv) (int, error) {
	pub, err := cliLoadPublicKey(c.flags.String("public-key"))
	if err != nil {
		return cliFail("--public-key: %v", err)
	}
	var rep *journal.Report
	var what string
	if path := c.source(); path != "" {
		what = path
		rep, err = cliVerifyFile(ctx, path, c.flags.String("journal"), pub)
	} else {
		var a *cliAdmin
		if a, err = c.admin(); err != nil {
			return cliFail("%v", err)
		}
		var name string
		if name, err = a.journalName(ctx, c.flags.String("journal")); err != nil {
			return cliFail("%v", err)
		}
		what = "journal " + name
		if pub != nil {
			rep, err = a.verifyHere(ctx, name, pub)
		} else {
			rep, err = a.verify(ctx, name)
		}
	}
	if err != nil {
		return cliFail("verifying %s: %v", what, err)
	}
	fmt.Fprintln(c.stdout, cliSummary(what, rep))
	if !rep.OK {
		return cliExitNotVerified, fmt.Errorf("%s does not verify: %s", what, cliProblem(rep.FirstBad))
	}
	return 0, nil
}

// cliVerifyFile verifies journal name (the only one when empty) of a backup file, or a
// JSONL export (recognised by its first byte).
func cliVerifyFile(ctx context.Context, path, name string, pub ed25519.PublicKey) (*journal.Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	first, err := br.Peek(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(first) == 1 && first[0] == '{' {
		return journal.VerifyJSONL(ctx, br, pub)
	}
	f.Close()
	return journal.VerifyFileJournal(ctx, path, name, pub)
}

// cliSummary is verify's one line.
func cliSummary(what string, r *journal.Report) string {
	if r.OK {
		sig := "signatures checked"
		if !r.Signed {
			sig = "signatures not checked: no public key"
		}
		partial := ""
		if r.Partial {
			partial = "; a filtered export: links across left-out records not checked"
		}
		return fmt.Sprintf("OK: %s verifies: %d records (seq %d to %d), %d checkpoints (%s%s)", what, r.Records, r.FirstSeq, r.LastSeq, r.Checkpoints, sig, partial)
	}
	return fmt.Sprintf("FAILED: %s does not verify: %s (%d records checked, %d checkpoints)", what, cliProblem(r.FirstBad), r.Records, r.Checkpoints)
}

func cliProblem(p *journal.Problem) string {
	if p == nil {
		return "no detail given"
	}
	s := fmt.Sprintf("first bad sequence number %d", p.Seq)
	if p.Kind != "" {
		s += " (" + p.Kind + ")"
	}
	if p.Detail != "" {
		s += ": " + p.Detail
	}
	return s
}

// cliLoadPublicKey reads an Ed25519 public key from a file or from the value itself:
// PEM (PUBLIC KEY), or base64 or hex of the 32-byte key or of its PKIX encoding.
func cliLoadPublicKey(v string) (ed25519.PublicKey, error) {
	if v == "" {
		return nil, nil
	}
	text := []byte(v)
	if st, err := os.Stat(v); err == nil && st.Mode().IsRegular() {
		if st.Size() > 64<<10 {
			return nil, fmt.Errorf("%s is too large to be a public key", v)
		}
		if text, err = os.ReadFile(v); err != nil {
			return nil, err
		}
	}
	text = bytes.TrimSpace(text)
	if block, _ := pem.Decode(text); block != nil {
		return cliParseKeyBytes(block.Bytes)
	}
	s := string(text)
	for _, dec := range []func(string) ([]byte, error){
		base64.StdEncoding.DecodeString, base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString, base64.RawURLEncoding.DecodeString, hex.DecodeString,
	} {
		if b, err := dec(s); err == nil {
			if pub, err := cliParseKeyBytes(b); err == nil {
				return pub, nil
			}
		}
	}
	return nil, errors.New("not an Ed25519 public key (want a file or a value in PEM, base64 or hex)")
}

func cliParseKeyBytes(b []byte) (ed25519.PublicKey, error) {
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

// --- export ---

// cliQueryFlags maps export's flags to the admin route's query parameters.
var cliQueryFlags = [][2]string{
	{"from", "from"}, {"to", "to"}, {"from-seq", "from_seq"}, {"to-seq", "to_seq"},
	{"scim-id", "scim_id"}, {"user-name", "user_name"}, {"outcome", "outcome"},
}

func cliExport(ctx context.Context, c *cliEnv) (int, error) {
	q := url.Values{}
	q.Set("format", c.flags.String("format"))
	for _, m := range cliQueryFlags {
		if v := c.flags.String(m[0]); v != "" {
			q.Set(m[1], v)
		}
	}
	// The same parsing as the admin route, so both paths accept and reject the same input;
	// its errors name query parameters, which read as the flags they come from.
	f, err := admParseFormat(q)
	if err != nil {
		return cliFail("--format: %v", cliAPIMessage(err))
	}
	jq, err := admParseQuery(q)
	if err != nil {
		return cliFail("%v", cliAPIMessage(err))
	}
	out, err := cliCreateOutput(c.flags.String("output"), c.stdout)
	if err != nil {
		return cliFail("%v", err)
	}
	defer out.discard()

	var n uint64
	var what string
	if path := c.source(); path != "" {
		what = path
		n, err = journal.ExportFileJournal(ctx, path, c.flags.String("journal"), out, jq, f)
	} else {
		a, aerr := c.admin()
		if aerr != nil {
			return cliFail("%v", aerr)
		}
		var name string
		if name, err = a.journalName(ctx, c.flags.String("journal")); err == nil {
			what = "journal " + name
			n, err = a.export(ctx, name, q, out)
		}
	}
	if err != nil {
		return cliFail("exporting %s: %v", what, err)
	}
	if err := out.commit(); err != nil {
		return cliFail("%v", err)
	}
	fmt.Fprintf(c.stderr, "exported %d records of %s as %s to %s\n", n, what, f, out.name)
	return 0, nil
}

// --- backup ---

func cliBackup(ctx context.Context, c *cliEnv) (int, error) {
	if c.source() != "" {
		return cliFail("backup reads a running instance (--admin); a --file is a backup already: copy it")
	}
	dest := c.flags.String("output")
	if dest == "" {
		return cliFail("--output is required (a file, or - for stdout)")
	}
	a, name, err := c.adminJournal(ctx)
	if err != nil {
		return cliFail("%v", err)
	}
	out, err := cliCreateOutput(dest, c.stdout)
	if err != nil {
		return cliFail("%v", err)
	}
	defer out.discard()
	n, err := a.backup(ctx, name, out)
	if err != nil {
		return cliFail("backing up journal %s: %v", name, err)
	}
	if err := out.commit(); err != nil {
		return cliFail("%v", err)
	}
	fmt.Fprintf(c.stderr, "backed up the store of journal %s: %d bytes to %s (check it with: journal verify --file %s)\n", name, n, out.name, out.name)
	return 0, nil
}

// --- tail ---

func cliTail(ctx context.Context, c *cliEnv) (int, error) {
	lines := c.flags.Int("lines")
	if lines < 0 || lines > liveMaxBacklog {
		return cliFail("-n: want a count from 0 to %d, got %d", liveMaxBacklog, lines)
	}
	filter := liveFilter{
		resourceType: c.flags.String("resource-type"),
		subject:      c.flags.String("user-name"),
		outcome:      c.flags.String("outcome"),
	}
	asJSON := c.flags.Bool("json")
	emit := func(e journal.Entry) error { return cliPrintEntry(c.stdout, e, asJSON) }

	if path := c.source(); path != "" {
		if err := cliTailFile(ctx, path, c.flags.String("journal"), lines, filter, emit); err != nil {
			return cliFail("reading %s: %v", path, err)
		}
		return 0, nil
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, name, err := c.adminJournal(ctx)
	if err != nil {
		return cliFail("%v", err)
	}
	err = a.follow(ctx, name, lines, filter, emit, c.stderr)
	if err != nil && ctx.Err() == nil {
		return cliFail("following journal %s: %v", name, err)
	}
	return 0, nil
}

// cliTailFile prints the last n records of a backup file that pass filter, in one pass.
func cliTailFile(ctx context.Context, path, name string, n int, filter liveFilter, emit func(journal.Entry) error) error {
	if n == 0 {
		return nil
	}
	ring := make([]journal.Entry, 0, n)
	next := 0
	err := liveReadJSONL(ctx, func(ctx context.Context, w io.Writer) error {
		_, err := journal.ExportFileJournal(ctx, path, name, w, journal.Query{}, journal.FormatJSONL)
		return err
	}, func(e journal.Entry) error {
		if !filter.match(&e.Record) {
			return nil
		}
		if len(ring) < n {
			ring = append(ring, e)
		} else {
			ring[next] = e
			next = (next + 1) % n
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := range ring {
		if err := emit(ring[(next+i)%len(ring)]); err != nil {
			return err
		}
	}
	return nil
}

// cliPrintEntry prints a record as one line: columns, or the record's JSON with its hash.
func cliPrintEntry(w io.Writer, e journal.Entry, asJSON bool) error {
	r := e.Record
	if asJSON {
		b, err := json.Marshal(liveEvent{Record: r, Hash: hex.EncodeToString(e.Hash[:])})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	status := "-"
	if r.Status != 0 {
		status = strconv.Itoa(r.Status)
	}
	_, err := fmt.Fprintf(w, "%s  %6d  %-12s %-8s %-6s %-8s %-3s %-36s %s  %s\n",
		r.Time.UTC().Format(time.RFC3339), r.Seq, cliCol(r.Client), cliCol(string(r.Action)), cliCol(r.ResourceType),
		cliCol(string(r.Outcome)), status, cliCol(r.SCIMID), cliCol(r.Subject), strings.Join(change.Strings(r.Events), ","))
	return err
}

// cliCol makes a value safe for a terminal column: no control characters (a userName could
// carry escape sequences) and "-" for empty.
func cliCol(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}

// --- output files ---

// cliOutput is where a download goes: stdout, or a temporary file renamed into place only
// when complete, so an interrupted export never leaves a file that looks whole.
type cliOutput struct {
	io.Writer
	name string
	f    *os.File
	dest string
	done bool
}

func cliCreateOutput(dest string, stdout io.Writer) (*cliOutput, error) {
	if dest == "" || dest == "-" {
		return &cliOutput{Writer: stdout, name: "stdout"}, nil
	}
	f, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".*.part")
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", dest, err)
	}
	return &cliOutput{Writer: f, name: dest, f: f, dest: dest}, nil
}

func (o *cliOutput) commit() error {
	if o.f == nil {
		return nil
	}
	if err := o.f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", o.dest, err)
	}
	if err := o.f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", o.dest, err)
	}
	if err := os.Rename(o.f.Name(), o.dest); err != nil {
		return fmt.Errorf("writing %s: %w", o.dest, err)
	}
	o.done = true
	return nil
}

// discard removes the temporary file unless commit succeeded.
func (o *cliOutput) discard() {
	if o.f == nil || o.done {
		return
	}
	_ = o.f.Close()
	_ = os.Remove(o.f.Name())
}

// --- the admin endpoint client ---

// cliAdmin talks to a running instance's admin endpoint as Caddy's own commands do: over
// TCP or a unix socket, with the Origin header the endpoint expects.
type cliAdmin struct {
	addr   string
	origin string
	unix   bool // a unix socket: no Origin, as the endpoint does not check one there
	client *http.Client
}

func cliNewAdmin(addr string) (*cliAdmin, error) {
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil || na.PortRangeSize() > 1 {
		return nil, fmt.Errorf("--admin: invalid admin address %q", addr)
	}
	a := &cliAdmin{addr: addr, origin: "http://" + na.JoinHostPort(0)}
	dialAddr := na.JoinHostPort(0)
	if na.IsUnixNetwork() {
		a.origin, a.unix = "http://127.0.0.1", true
		dialAddr = na.Host
	} else if na.IsFdNetwork() {
		return nil, fmt.Errorf("--admin: %s is a file descriptor address, which only the process itself can use", addr)
	}
	var d net.Dialer
	a.client = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, na.Network, dialAddr)
		},
		ResponseHeaderTimeout: 5 * time.Minute, // verify reads the whole journal first
	}}
	return a, nil
}

// do sends a request; a non-2xx answer is returned as an error carrying the endpoint's
// message.
func (a *cliAdmin) do(ctx context.Context, method, path string, q url.Values, okStatus ...int) (*http.Response, error) {
	u := a.origin + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	if !a.unix {
		req.Header.Set("Origin", a.origin)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("is scimgate running with its admin endpoint at %s? %w", a.addr, err)
	}
	if resp.StatusCode/100 == 2 || slices.Contains(okStatus, resp.StatusCode) {
		return resp, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return nil, fmt.Errorf("%s %s: %s", method, path, e.Error)
	}
	return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(body))
}

// cliJournalPath is the admin path of one of a journal's routes.
func cliJournalPath(name, route string) string {
	return admPrefix + "/" + url.PathEscape(name) + "/" + route
}

// journalName returns name, or the only journal's name when name is empty.
func (a *cliAdmin) journalName(ctx context.Context, name string) (string, error) {
	if name != "" {
		return name, nil
	}
	resp, err := a.do(ctx, http.MethodGet, admPrefix, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var list []admListItem
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&list); err != nil {
		return "", fmt.Errorf("reading the journal list: %w", err)
	}
	switch len(list) {
	case 0:
		return "", fmt.Errorf("the instance at %s has no journal (is a scim_gateway configured?)", a.addr)
	case 1:
		return list[0].Name, nil
	}
	names := make([]string, len(list))
	for i, j := range list {
		names[i] = j.Name
	}
	return "", fmt.Errorf("the instance has several journals (%s): choose one with --journal", strings.Join(names, ", "))
}

// verify asks the instance to verify with its configured key.
func (a *cliAdmin) verify(ctx context.Context, name string) (*journal.Report, error) {
	resp, err := a.do(ctx, http.MethodGet, cliJournalPath(name, "verify"), nil, http.StatusConflict)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var rep journal.Report
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&rep); err != nil {
		return nil, fmt.Errorf("reading the report: %w", err)
	}
	return &rep, nil
}

// verifyHere exports the whole journal as JSONL and verifies it in this process with pub,
// trusting nothing the instance says about itself.
func (a *cliAdmin) verifyHere(ctx context.Context, name string, pub ed25519.PublicKey) (*journal.Report, error) {
	resp, err := a.do(ctx, http.MethodGet, cliJournalPath(name, "export"), url.Values{"format": {string(journal.FormatJSONL)}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return journal.VerifyJSONL(ctx, resp.Body, pub)
}

// export streams an export into w and checks it arrived whole.
func (a *cliAdmin) export(ctx context.Context, name string, q url.Values, w io.Writer) (uint64, error) {
	resp, err := a.do(ctx, http.MethodGet, cliJournalPath(name, "export"), q)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return 0, fmt.Errorf("the export was cut short: %w", err)
	}
	n, err := strconv.ParseUint(resp.Trailer.Get(admExportTrailer), 10, 64)
	if err != nil {
		return 0, errors.New("the export was cut short (no record count at its end)")
	}
	return n, nil
}

// backup streams the store snapshot into w.
func (a *cliAdmin) backup(ctx context.Context, name string, w io.Writer) (int64, error) {
	resp, err := a.do(ctx, http.MethodGet, cliJournalPath(name, "backup"), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("the backup was cut short: %w", err)
	}
	return n, nil
}

// follow prints the live stream until ctx ends, reconnecting after the last record seen
// when the stream drops (as EventSource does).
func (a *cliAdmin) follow(ctx context.Context, name string, backlog int, f liveFilter, emit func(journal.Entry) error, stderr io.Writer) error {
	var last uint64
	q := url.Values{}
	for k, v := range map[string]string{"resource_type": f.resourceType, "user_name": f.subject, "outcome": f.outcome} {
		if v != "" {
			q.Set(k, v)
		}
	}
	for attempt := 0; ; attempt++ {
		if last > 0 {
			q.Del("backlog")
			q.Set("last_event_id", strconv.FormatUint(last, 10))
		} else {
			q.Set("backlog", strconv.Itoa(backlog))
		}
		got, err := a.stream(ctx, name, q, func(e journal.Entry) error {
			last = e.Record.Seq
			return emit(e)
		})
		if ctx.Err() != nil {
			return nil
		}
		if got {
			attempt = 0
		}
		if attempt >= 5 {
			return err
		}
		fmt.Fprintf(stderr, "stream ended (%v); reconnecting\n", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Duration(attempt+1) * time.Second):
		}
	}
}

// stream reads one SSE connection, handing record events to fn. got reports whether the
// connection was established.
func (a *cliAdmin) stream(ctx context.Context, name string, q url.Values, fn func(journal.Entry) error) (got bool, err error) {
	resp, err := a.do(ctx, http.MethodGet, cliJournalPath(name, "live"), q)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	err = cliReadSSE(resp.Body, func(event string, data []byte) error {
		switch event {
		case "record":
			e, ok, err := cliParseEvent(data)
			if err != nil || !ok {
				return err
			}
			return fn(e)
		case "dropped":
			return errors.New("the instance dropped the stream")
		}
		return nil
	})
	if err == nil {
		err = io.EOF
	}
	return true, err
}

// cliParseEvent decodes a record event's data (a record with its hash).
func cliParseEvent(data []byte) (journal.Entry, bool, error) {
	var ev liveEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return journal.Entry{}, false, fmt.Errorf("decoding a record event: %w", err)
	}
	e := journal.Entry{Record: ev.Record}
	if h, err := hex.DecodeString(ev.Hash); err == nil && len(h) == len(e.Hash) {
		copy(e.Hash[:], h)
	}
	return e, true, nil
}

// cliReadSSE parses a server-sent event stream, calling fn per event.
func cliReadSSE(r io.Reader, fn func(event string, data []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 2*journal.MaxRecordBytes)
	var event string
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			if data != nil || event != "" {
				if event == "" {
					event = "message"
				}
				if err := fn(event, bytes.TrimSuffix(data, []byte("\n"))); err != nil {
					return err
				}
			}
			event, data = "", nil
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			event = string(value)
		case "data":
			data = append(append(data, value...), '\n')
		}
	}
	return sc.Err()
}

// cliAPIMessage turns an admin route's parameter error into the flag's terms.
func cliAPIMessage(err error) string {
	msg := err.Error()
	var apiErr caddy.APIError
	if errors.As(err, &apiErr) && apiErr.Message != "" {
		msg = apiErr.Message
	}
	for _, m := range cliQueryFlags {
		if rest, ok := strings.CutPrefix(msg, "parameter "+m[1]+": "); ok {
			return "--" + m[0] + ": " + rest
		}
	}
	return strings.TrimPrefix(msg, "parameter format: ")
}

// --- watch ---

// Caddy's admin endpoint refuses every request that carries Sec-Fetch-Mode without an
// Origin or Referer it allows, and a URL typed into a browser's address bar carries
// neither. watch puts a small, read-only HTTP server on loopback in front of it that serves
// exactly the journal's page and its live stream, and forwards them with the admin
// endpoint's own origin, so every other admin route keeps the endpoint's protection. The
// page is reached at the same path as on the admin endpoint (/ redirects there), so its
// script finds its stream and journal name from its own URL, unchanged.

const (
	// cliWatchDefaultListen is where watch serves unless told: loopback, a free port.
	cliWatchDefaultListen = "127.0.0.1:0"

	// cliWatchShutdownGrace bounds how long watch waits for responses when stopping; the
	// live streams end at once, since their requests share the command's context.
	cliWatchShutdownGrace = 5 * time.Second
)

// The routes watch serves: the page and its stream, each with the query parameters the
// admin route accepts.
const (
	cliWatchPage = "watch"
	cliWatchLive = "live"
)

var cliWatchParams = map[string][]string{
	cliWatchPage: {"resource_type", "user_name", "outcome"},
	cliWatchLive: liveParams,
}

func cliWatch(ctx context.Context, c *cliEnv) (int, error) {
	if c.source() != "" {
		return cliFail("watch follows a running instance (--admin); to read a backup file use: journal tail --file")
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, name, err := c.adminJournal(ctx)
	if err != nil {
		return cliFail("%v", err)
	}
	if err := a.checkPage(ctx, name); err != nil {
		return cliFail("%v", err)
	}
	ln, err := cliWatchListen(c.flags.String("listen"))
	if err != nil {
		return cliFail("--listen: %v", err)
	}
	p, err := cliNewWatchProxy(a, name, ln.Addr().(*net.TCPAddr), c.stderr)
	if err != nil {
		ln.Close()
		return cliFail("%v", err)
	}
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// Requests share the command's context: stopping ends the live streams too, which
		// Shutdown alone would wait for forever.
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    log.New(c.stderr, "journal watch: ", 0),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	pageURL := "http://" + ln.Addr().String() + "/"
	fmt.Fprintf(c.stdout, "Watching journal %s: open %s\n", name, pageURL)
	fmt.Fprintf(c.stderr, "Serving only the journal's page and live stream from the admin endpoint at %s; press Ctrl+C to stop.\n", a.addr)
	if c.flags.Bool("open") {
		if err := cliOpenBrowser(pageURL); err != nil {
			fmt.Fprintf(c.stderr, "could not start a browser (%v): open the URL yourself\n", err)
		}
	}

	select {
	case err := <-served:
		return cliFail("serving the page: %v", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), cliWatchShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	return 0, nil
}

// checkPage fetches the journal's page once, so a wrong --journal or an instance without
// the page fails now, with the endpoint's message, rather than in the browser.
func (a *cliAdmin) checkPage(ctx context.Context, name string) error {
	resp, err := a.do(ctx, http.MethodGet, cliJournalPath(name, cliWatchPage), nil)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.Body.Close()
}

// cliWatchListen listens on addr, which must be a loopback address: the page is served
// without authentication, to whoever can connect.
func cliWatchListen(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("want host:port such as %s, got %q", cliWatchDefaultListen, addr)
	}
	if !cliIsLoopbackHost(host) {
		return nil, fmt.Errorf("%q is not a loopback address: the page has no authentication of its own, so watch serves it on 127.0.0.1, ::1 or localhost only", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	// localhost is resolved by the system: check what was actually bound.
	if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("%q resolved to %s, which is not a loopback address", addr, ln.Addr())
	}
	return ln, nil
}

func cliIsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// cliWatchProxy serves the journal's page and live stream from the admin endpoint.
type cliWatchProxy struct {
	name     string
	hosts    []string            // Host headers that name this server (DNS-rebinding guard)
	upstream map[string]*url.URL // admin URL of each route, without query
	origin   string              // Origin sent to the admin endpoint; "" over a unix socket
	admin    string              // the admin address, for messages
	log      io.Writer
	rp       *httputil.ReverseProxy
}

func cliNewWatchProxy(a *cliAdmin, name string, bound *net.TCPAddr, logw io.Writer) (*cliWatchProxy, error) {
	p := &cliWatchProxy{
		name:     name,
		hosts:    cliWatchHosts(bound),
		upstream: map[string]*url.URL{},
		admin:    a.addr,
		log:      logw,
	}
	if !a.unix {
		p.origin = a.origin
	}
	for route := range cliWatchParams {
		u, err := url.Parse(a.origin + cliJournalPath(name, route))
		if err != nil {
			return nil, fmt.Errorf("the journal's %s URL: %w", route, err)
		}
		p.upstream[route] = u
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:      p.rewrite,
		Transport:    a.client.Transport,
		ErrorHandler: p.proxyError,
		// Mid-stream copy errors are the browser leaving or watch stopping; the page
		// reconnects by itself, so they are not worth a line each.
		ErrorLog: log.New(io.Discard, "", 0),
		// Every write is flushed: the stream's events must reach the page as they commit
		// (ReverseProxy does so for text/event-stream anyway; this does not depend on it).
		FlushInterval: -1,
	}
	return p, nil
}

// cliWatchHosts lists the Host headers a browser sends for the bound address: the address
// as printed, and localhost with the same port.
func cliWatchHosts(bound *net.TCPAddr) []string {
	port := strconv.Itoa(bound.Port)
	hosts := []string{net.JoinHostPort(bound.IP.String(), port), net.JoinHostPort("localhost", port)}
	if bound.Port == 80 { // browsers leave the default port out of Host
		ip := bound.IP.String()
		if bound.IP.To4() == nil {
			ip = "[" + ip + "]"
		}
		hosts = append(hosts, ip, "localhost")
	}
	return hosts
}

// ServeHTTP checks, in order: the Host (403), the method (405), what a web page on another
// site could make a browser send (403), and the path and parameters (404, 400); then it
// redirects / to the page or forwards the page or stream to the admin endpoint.
func (p *cliWatchProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !slices.ContainsFunc(p.hosts, func(h string) bool { return strings.EqualFold(h, r.Host) }) {
		cliWatchError(w, http.StatusForbidden, fmt.Sprintf("host not allowed: %q (open http://%s/)", r.Host, p.hosts[0]))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		cliWatchError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed: this server only shows the journal", r.Method))
		return
	}
	if err := p.checkFetchContext(r); err != nil {
		cliWatchError(w, http.StatusForbidden, err.Error())
		return
	}
	if r.URL.EscapedPath() == "/" {
		target := p.upstream[cliWatchPage].Path
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, target, http.StatusFound)
		return
	}
	route, ok := p.route(r.URL)
	if !ok {
		cliWatchError(w, http.StatusNotFound, fmt.Sprintf("not found: this server only shows journal %s at %s", p.name, p.upstream[cliWatchPage].Path))
		return
	}
	if route == cliWatchLive && r.Method == http.MethodHead {
		// A stream has no end to send headers for; HEAD would hold a connection open.
		w.Header().Set("Allow", "GET")
		cliWatchError(w, http.StatusMethodNotAllowed, "method HEAD not allowed on the live stream; use GET")
		return
	}
	if err := admCheckParams(r.URL.Query(), cliWatchParams[route]...); err != nil {
		cliWatchError(w, http.StatusBadRequest, cliAPIText(err))
		return
	}
	p.rp.ServeHTTP(w, r)
}

// checkFetchContext refuses what another site's page could make a browser send: an Origin
// other than this server's, a no-cors request (the admin endpoint refuses those too), and
// any request from another site but a top-level navigation, which cannot read the answer.
func (p *cliWatchProxy) checkFetchContext(r *http.Request) error {
	if origins, ok := r.Header["Origin"]; ok {
		if len(origins) != 1 || !slices.ContainsFunc(p.hosts, func(h string) bool { return strings.EqualFold("http://"+h, origins[0]) }) {
			return fmt.Errorf("origin not allowed: %q", strings.Join(origins, ", "))
		}
	}
	mode := r.Header.Get("Sec-Fetch-Mode")
	if strings.Contains(mode, "no-cors") {
		return errors.New("no-cors requests are not allowed")
	}
	if site := r.Header.Get("Sec-Fetch-Site"); (site == "cross-site" || site == "same-site") && mode != "navigate" {
		return fmt.Errorf("%s requests are not allowed", site)
	}
	return nil
}

// route returns which of the journal's routes u names: only this journal's page and live
// stream, at exactly their paths.
func (p *cliWatchProxy) route(u *url.URL) (string, bool) {
	if !strings.HasPrefix(u.EscapedPath(), admPrefix+"/") {
		return "", false
	}
	name, action, err := admSplitPath(u)
	if err != nil || name != p.name {
		return "", false
	}
	_, ok := cliWatchParams[action]
	return action, ok
}

// rewrite makes the admin request: the route's admin URL with the checked parameters, GET
// (the server answers HEAD by dropping the body), and only the headers the page's requests
// need, with the admin endpoint's own Origin in place of whatever the browser sent.
func (p *cliWatchProxy) rewrite(pr *httputil.ProxyRequest) {
	route, _ := p.route(pr.In.URL)
	u := *p.upstream[route]
	u.RawQuery = pr.In.URL.Query().Encode()
	out := pr.Out
	out.URL = &u
	out.Host = ""
	out.Method = http.MethodGet
	out.Body, out.ContentLength, out.TransferEncoding = nil, 0, nil
	h := http.Header{}
	for _, k := range []string{"Accept", "Last-Event-ID"} {
		if v := pr.In.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	if p.origin != "" {
		h.Set("Origin", p.origin)
	}
	out.Header = h
}

// proxyError answers when the admin endpoint could not be reached.
func (p *cliWatchProxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the browser left, or watch is stopping
	}
	fmt.Fprintf(p.log, "journal watch: %s %s: %v\n", r.Method, r.URL.Path, err)
	cliWatchError(w, http.StatusBadGateway, fmt.Sprintf("the admin endpoint at %s did not answer; is scimgate still running?", p.admin))
}

func cliWatchError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, msg, status)
}

// cliAPIText is the message of an admin route's error.
func cliAPIText(err error) string {
	var apiErr caddy.APIError
	if errors.As(err, &apiErr) && apiErr.Message != "" {
		return apiErr.Message
	}
	return err.Error()
}

// cliOpenBrowser starts the system's default browser on u, without waiting for it.
func cliOpenBrowser(u string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", u)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", u)
	default:
		cmd = exec.Command("xdg-open", u)
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }()
	return nil
}
