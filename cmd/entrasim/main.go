// Command entrasim plays Microsoft Entra ID's provisioning service against a SCIM 2.0
// endpoint, so scimgate (or any SCIM server) can be tried and load-tested without an
// Entra tenant:
//
//	entrasim -url http://127.0.0.1:8080/scim/v2 -users 200 -groups 20 -seed 1
//
// The initial cycle sends what Entra sends (entra-wire.md §1-5): a test-connection probe
// (a user and a group filtered by a random GUID, expecting an empty ListResponse); per
// user a userName filter lookup, then a POST when absent or a PATCH of the differences
// when present; the manager reference pass; per group a displayName lookup with
// excludedAttributes=members and a POST without members; then membership PATCHes. The
// incremental cycle sends -changes changes drawn from the seed: attribute updates,
// disables, re-enables, member removals and DELETEs. -dialect aadOptscim062020 switches
// every PATCH to the feature flag's form.
//
// The source is generated from -seed (the same seed gives the same users, groups and
// changes), or read from -input, a JSON file:
//
//	{"users": [{"userName": "ada@contoso.example", "externalId": "...", "givenName": "Ada",
//	            "familyName": "Lovelace", "displayName": "Ada Lovelace",
//	            "email": "ada@mail.contoso.example", "title": "Engineer",
//	            "department": "Research", "employeeNumber": "E1",
//	            "manager": "<another user's userName>", "active": false}],
//	 "groups": [{"displayName": "Research", "externalId": "...",
//	             "members": ["<userName>", ...], "memberGroups": ["<displayName>", ...]}]}
//
// Only userName and displayName are required; active defaults to true.
//
// It prints requests by kind, statuses and latencies (-json for a machine-readable
// summary), and exits 1 if any request got a status Entra would not accept, 2 on a usage
// error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"time"
)

// config is the parsed command line.
type config struct {
	URL         string
	Token       string
	Users       int
	Groups      int
	Seed        int64
	Input       string
	Dialect     dialect
	Concurrency int
	Phase       string
	Changes     int
	JSON        bool
	Timeout     time.Duration
	Insecure    bool
}

const (
	phaseInitial     = "initial"
	phaseIncremental = "incremental"
	phaseAll         = "all"
	maxConcurrency   = 1024
)

// parseFlags parses args; getenv supplies the token's default ($SCIM_TOKEN).
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("entrasim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dialectName := fs.String("dialect", "default", "PATCH dialect: default or aadOptscim062020")
	fs.StringVar(&cfg.URL, "url", "", "SCIM Tenant URL, e.g. http://127.0.0.1:8080/scim/v2 (required)")
	fs.StringVar(&cfg.Token, "token", getenv("SCIM_TOKEN"), "bearer token (default $SCIM_TOKEN)")
	fs.IntVar(&cfg.Users, "users", 100, "users to generate")
	fs.IntVar(&cfg.Groups, "groups", 10, "groups to generate")
	fs.Int64Var(&cfg.Seed, "seed", 1, "seed of the generated users, groups and changes")
	fs.StringVar(&cfg.Input, "input", "", "JSON file of users and groups to provision instead of generated ones")
	fs.IntVar(&cfg.Concurrency, "concurrency", 8, "requests in flight at once")
	fs.StringVar(&cfg.Phase, "phase", phaseAll, "cycle to play: initial, incremental or all")
	fs.IntVar(&cfg.Changes, "changes", 20, "changes in the incremental cycle")
	fs.BoolVar(&cfg.JSON, "json", false, "print the summary as JSON")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Minute, "stop the whole run after this long")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "skip TLS certificate verification")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	d, err := parseDialect(*dialectName)
	if err != nil {
		return cfg, err
	}
	cfg.Dialect = d
	return cfg, cfg.validate()
}

// validate checks the bounds that keep a run finite and the URL the only one contacted.
func (cfg *config) validate() error {
	u, err := url.Parse(cfg.URL)
	switch {
	case cfg.URL == "":
		return errors.New("-url is required")
	case err != nil:
		return fmt.Errorf("-url: %w", err)
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("-url %q: want an http or https URL with a host", cfg.URL)
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("-url %q: drop the query (use -dialect aadOptscim062020 for the feature flag)", cfg.URL)
	case cfg.Token == "":
		return errors.New("no token: set -token or SCIM_TOKEN")
	case cfg.Users < 0 || cfg.Users > maxUsers:
		return fmt.Errorf("-users must be 0..%d", maxUsers)
	case cfg.Groups < 0 || cfg.Groups > maxGroups:
		return fmt.Errorf("-groups must be 0..%d", maxGroups)
	case cfg.Changes < 0 || cfg.Changes > maxChanges:
		return fmt.Errorf("-changes must be 0..%d", maxChanges)
	case cfg.Concurrency < 1 || cfg.Concurrency > maxConcurrency:
		return fmt.Errorf("-concurrency must be 1..%d", maxConcurrency)
	case cfg.Timeout <= 0:
		return errors.New("-timeout must be positive")
	case cfg.Phase != phaseInitial && cfg.Phase != phaseIncremental && cfg.Phase != phaseAll:
		return fmt.Errorf("-phase %q: want initial, incremental or all", cfg.Phase)
	}
	return nil
}

// dataset returns the source tenant: the -input file, or users and groups from the seed.
func (cfg *config) dataset() (*Dataset, error) {
	if cfg.Input != "" {
		return loadDataset(cfg.Input)
	}
	return generate(cfg.Seed, cfg.Users, cfg.Groups), nil
}

// errUnexpected is returned (wrapped) when any request got a status Entra would not accept.
var errUnexpected = errors.New("unexpected statuses")

// run plays the chosen cycles and prints the summary to stdout. The error is non-nil when
// a request had an unexpected outcome or the run did not finish in time; the summary is
// returned in any case once the dataset is ready.
func run(ctx context.Context, cfg config, stdout io.Writer) (*Summary, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ds, err := cfg.dataset()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	rec := newRecorder()
	s := newSim(ds, newClient(cfg.URL, cfg.Token, cfg.Insecure, rec), cfg.Dialect, cfg.Concurrency)
	var plan []change
	if cfg.Phase != phaseInitial {
		plan = planChanges(cfg.Seed, ds, cfg.Changes)
	}
	start := time.Now()
	if cfg.Phase != phaseIncremental {
		s.initial(ctx)
	}
	if cfg.Phase != phaseInitial && ctx.Err() == nil {
		s.incremental(ctx, plan)
	}
	sum := &Summary{
		URL: cfg.URL, Dialect: cfg.Dialect.String(), Phase: cfg.Phase, Concurrency: cfg.Concurrency,
		Users: len(ds.Users), Groups: len(ds.Groups), Changes: len(plan), Unchanged: int(s.unchanged.Load()),
	}
	rec.fill(sum, time.Since(start))
	if err := printSummary(stdout, sum, cfg.JSON); err != nil {
		return sum, fmt.Errorf("printing the summary: %w", err)
	}
	switch {
	case ctx.Err() != nil:
		return sum, fmt.Errorf("stopped before the end: %w", context.Cause(ctx))
	case sum.Unexpected > 0:
		return sum, fmt.Errorf("%d %w, first: %s", sum.Unexpected, errUnexpected, sum.UnexpectedSamples[0])
	}
	return sum, nil
}

func printSummary(w io.Writer, s *Summary, asJSON bool) error {
	if !asJSON {
		return s.writeText(w)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(s)
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "entrasim:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "entrasim:", err)
		stop()
		os.Exit(1)
	}
}
