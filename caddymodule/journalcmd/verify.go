package journalcmd

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"

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
		Use:   "verify [--admin <host:port> | --file <path>] [--public-key <file|base64>]",
		Short: "Verifies the journal's hash chain and checkpoints",
		Args:  cobra.NoArgs,
		RunE:  runE(runVerify),
	}
	cmd.Flags().StringArray("public-key", nil, "Ed25519 public key that signs the checkpoints: a file (PEM or base64) or base64; repeat it for every key the journal was signed with (a rotated key)")
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
		rep, err = verifyFile(ctx, path, c.flags.String("journal"), keys)
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
// export (recognised by its first byte).
func verifyFile(ctx context.Context, path, name string, keys []ed25519.PublicKey) (*journal.Report, error) {
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
		return journal.VerifyJSONL(ctx, br, keys...)
	}
	f.Close()
	return journal.VerifyFileJournal(ctx, path, name, keys...)
}

// summary is verify's one line.
func summary(what string, r *journal.Report) string {
	if r.OK {
		sig := "signatures checked"
		switch {
		case !r.Signed:
			sig = "signatures not checked: no public key"
		case r.Checkpoints == 0:
			sig = "no checkpoint: no signature to check, and a cut tail would not show"
		}
		partial := ""
		if r.Partial {
			partial = "; a filtered export: links across left-out records not checked"
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
