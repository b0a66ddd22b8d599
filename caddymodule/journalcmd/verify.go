package journalcmd

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/journaladmin"
)

// ExitNotVerified is the exit status of a verification that ran and failed (sysexits'
// EX_DATAERR), so scripts can tell a tampered journal from one that could not be checked
// (status 1).
const ExitNotVerified = 65

func newVerifyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify [--admin <host:port> | --file <path>] [--public-key <file|base64>] [--subset]",
		Short: "Verifies the journal's hash chain and checkpoints",
		Args:  cobra.NoArgs,
		RunE:  runE(runVerify),
	}
	cmd.Flags().StringArray("public-key", nil, "Ed25519 public key that signs the checkpoints: a file (PEM or base64) or base64; repeat it for every key the journal was signed with (a rotated key)")
	cmd.Flags().Bool("subset", false, "Accept a filtered JSONL export (one you asked for with --from, --to, --scim-id, --user-name or --outcome): records its filter left out are not an error, and cannot be checked")
	return cmd
}

func runVerify(ctx context.Context, c *env) (int, error) {
	var keys []ed25519.PublicKey
	given, _ := c.flags.GetStringArray("public-key")
	for _, v := range given {
		pub, err := loadPublicKey(v)
		if err != nil {
			return fail("--public-key %s: %v", v, err)
		}
		if pub == nil {
			return fail("--public-key: empty value")
		}
		keys = append(keys, pub)
	}
	var err error
	var rep *journal.Report
	var what string
	if path := c.source(); path != "" {
		what = path
		rep, err = verifyFile(ctx, path, c.flags.String("journal"), journal.JSONLOptions{Keys: keys, Subset: c.flags.Bool("subset")})
		if err == nil && rep.Journal != "" {
			what = "journal " + rep.Journal + " in " + path
		}
	} else {
		var a *adminClient
		if a, err = c.admin(); err != nil {
			return fail("%v", err)
		}
		var item journaladmin.ListItem
		if item, err = a.journalItem(ctx, c.flags.String("journal")); err != nil {
			return fail("%v", err)
		}
		name := item.Name
		what = describe(item)
		if len(keys) > 0 {
			rep, err = a.verifyHere(ctx, name, keys)
		} else {
			rep, err = a.verify(ctx, name)
		}
	}
	if err != nil {
		return fail("verifying %s: %v", what, err)
	}
	fmt.Fprintln(c.stdout, summary(what, rep))
	if !rep.OK {
		return ExitNotVerified, fmt.Errorf("%s does not verify: %s", what, problem(rep.FirstBad))
	}
	return 0, nil
}

// verifyFile verifies journal name (the only one when empty) of a backup file, or a JSONL
// export (recognised by its first byte), which must then be of journal name when given.
func verifyFile(ctx context.Context, path, name string, o journal.JSONLOptions) (*journal.Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	first, err := br.Peek(len(csvStart))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	switch {
	case len(first) > 0 && first[0] == '{':
		o.Journal = name
		return journal.VerifyJSONLWith(ctx, br, o)
	case string(first) == csvStart:
		return nil, errors.New("a CSV export cannot be verified (it does not carry the stored records and checkpoints): verify a JSONL export or a backup")
	}
	f.Close()
	return journal.VerifyFileJournal(ctx, path, name, o.Keys...)
}

// csvStart is how a CSV export begins (journal.CSVHeader).
var csvStart = strings.Join(journal.CSVHeader[:2], ",") + ","

// summary is verify's one line.
func summary(what string, r *journal.Report) string {
	if r.OK {
		sig := "signatures checked"
		switch {
		case !r.Signed:
			sig = "signatures not checked: no public key"
		case r.Checkpoints == 0:
			sig = "no checkpoint: no signature to check, and a cut tail would not show"
		case r.CheckpointTime != nil:
			// Whoever can write the file can drop the newest checkpoints with the records
			// after them: the signed time of the newest one left tells how old it is.
			sig += fmt.Sprintf(", the newest signed at %s", r.CheckpointTime.UTC().Format(time.RFC3339))
		}
		partial := ""
		switch {
		case r.Partial && r.Signed:
			partial = "; a filtered subset: signed checkpoints vouch for its records, but it cannot show that none its filter selects was left out"
		case r.Partial:
			partial = "; a filtered subset: links across left-out records not checked, and it cannot show that none its filter selects was left out"
		}
		tail := ""
		if r.Checkpoints > 0 && r.LastSeq > r.CheckpointSeq {
			// Anyone who can write the file can append or rewrite these with recomputed
			// hashes: say so, rather than let "signatures checked" vouch for them.
			tail = fmt.Sprintf("; records %d to %d follow the newest checkpoint: none vouches for them yet", r.CheckpointSeq+1, r.LastSeq)
		}
		return fmt.Sprintf("OK: %s verifies: %d records (seq %d to %d), %d checkpoints (%s%s)%s", what, r.Records, r.FirstSeq, r.LastSeq, r.Checkpoints, sig, partial, tail)
	}
	return fmt.Sprintf("FAILED: %s does not verify: %s (%d records checked, %d checkpoints)", what, problem(r.FirstBad), r.Records, r.Checkpoints)
}

func problem(p *journal.Problem) string {
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

// loadPublicKey reads an Ed25519 public key from a file or from the value itself
// (journal.ParsePublicKey's encodings).
func loadPublicKey(v string) (ed25519.PublicKey, error) {
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
	pub, err := journal.ParsePublicKey(text)
	if err != nil {
		return nil, errors.New("not an Ed25519 public key (want a file or a value in PEM, base64 or hex)")
	}
	return pub, nil
}
