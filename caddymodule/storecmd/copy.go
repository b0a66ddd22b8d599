package storecmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/kv"
	"github.com/scimgate/scimgate/caddymodule/kv/etcdkv"
	"github.com/scimgate/scimgate/caddymodule/storeconfig"
)

func newCopyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "copy --from <file|etcd> --to <file|etcd> [--config <Caddyfile> | --endpoints <urls> ...]",
		Short: "Copies the whole store into an empty destination and verifies the copy",
		Args:  cobra.NoArgs,
		RunE:  runE(runCopy),
	}
	fl := cmd.Flags()
	fl.String("from", "", "Source: a bbolt file, or etcd")
	fl.String("to", "", "Destination: a bbolt file that does not exist yet, or etcd (an empty prefix)")
	fl.String("config", "", "A Caddyfile (or .json) whose store etcd { ... } block names the etcd end")
	fl.String("endpoints", "", "etcd client URLs, comma-separated (http(s)://host:2379)")
	fl.String("prefix", "", "etcd key prefix of the store (default "+"/scimgate/"+")")
	fl.String("username", "", "etcd user")
	fl.String("password-env", "", "Name of the environment variable holding the etcd password")
	fl.String("password-file", "", "File holding the etcd password")
	fl.String("ca", "", "PEM file of the CA that signs the etcd members' certificates")
	fl.String("cert", "", "PEM client certificate for etcd (mutual TLS)")
	fl.String("key", "", "PEM key of --cert")
	fl.String("server-name", "", "Name to verify in the etcd members' certificates")
	fl.Duration("timeout", storeconfig.DefaultRequestTimeout, "Bounds connecting to etcd and each of its requests")
	return cmd
}

// end is one side of a copy, open.
type end struct {
	db kv.DB
	// path is the bbolt file the user named ("" for etcd); tmp the file a bbolt destination
	// is written to until it verifies.
	path, tmp string
	// etcd is the etcd store, for the advice on clearing it.
	etcd *etcdkv.DB
}

func (e *end) close() {
	if e != nil && e.db != nil {
		_ = e.db.Close()
	}
}

func runCopy(ctx context.Context, f caddycmd.Flags, stdout io.Writer) error {
	from, to := f.String("from"), f.String("to")
	if from == "" || to == "" {
		return usagef("store copy needs --from and --to: a bbolt file's path, or etcd")
	}
	if from == etcdWord && to == etcdWord {
		return usagef("store copy copies between bbolt and etcd (one etcd end per copy): to move between etcd clusters or prefixes, copy to a file, then from it")
	}
	if from != etcdWord && to != etcdWord {
		for _, name := range append([]string{"config"}, etcdFlags...) {
			if f.Changed(name) {
				return usagef("--%s names an etcd store, but neither --from nor --to is etcd", name)
			}
		}
	}
	if from != etcdWord && to != etcdWord && sameFile(from, to) {
		return usagef("--from and --to are the same file")
	}
	var etcdEnd func() (*end, error)
	if from == etcdWord || to == etcdWord {
		r, err := etcdStore(f)
		if err != nil {
			return err
		}
		etcdEnd = func() (*end, error) {
			db, err := openEtcd(ctx, r)
			if err != nil {
				return nil, err
			}
			return &end{db: db, etcd: db}, nil
		}
	}

	start := time.Now()
	var src, dst *end
	var err error
	if from == etcdWord {
		src, err = etcdEnd()
	} else {
		var b *kv.Bolt
		if b, err = openBoltSource(from); err == nil {
			src = &end{db: b, path: from}
		}
	}
	if err != nil {
		return err
	}
	defer src.close()
	if to == etcdWord {
		dst, err = etcdEnd()
	} else {
		dst, err = createBolt(to)
	}
	if err != nil {
		return err
	}
	defer func() {
		dst.close()
		if dst.tmp != "" {
			_ = os.Remove(dst.tmp) // gone already when the copy verified and was put in place
		}
	}()

	if err := refuseNonEmpty(dst); err != nil {
		return err
	}
	res, err := copyStore(ctx, dst.db, src.db)
	if err != nil {
		return fmt.Errorf("%w%s", err, dst.leftover())
	}
	if dst.tmp != "" {
		if err := dst.place(); err != nil {
			return err
		}
	}
	res.took = time.Since(start)
	res.print(stdout, src, dst)
	return nil
}

// sameFile reports whether two paths name the same existing file (or the same path).
func sameFile(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// createBolt opens a new bbolt destination: a temporary file next to path, which place
// renames to path once the copy verified. An existing path is refused, saying what it holds.
func createBolt(path string) (*end, error) {
	if _, err := os.Lstat(path); err == nil {
		what := ""
		if db, err := kv.OpenBolt(path, kv.BoltOptions{ReadOnly: true, Timeout: lockWait}); err == nil {
			if s, err := describe(db); err == nil {
				what = " and holds " + s
			}
			_ = db.Close()
		}
		return nil, fmt.Errorf("destination %s exists%s: store copy never overwrites a file; remove it (rm %s) or name a new file", path, what, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("destination: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	tf, err := os.CreateTemp(dir, "."+filepath.Base(path)+".part-*")
	if err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	tmp := tf.Name()
	_ = tf.Close()
	db, err := kv.OpenBolt(tmp, kv.BoltOptions{})
	if err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("destination: %w", err)
	}
	return &end{db: db, path: path, tmp: tmp}, nil
}

// place closes the verified temporary file and links it at its path, refusing to replace
// a file that appeared there meanwhile.
func (e *end) place() error {
	if err := e.db.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", e.tmp, err)
	}
	e.db = nil
	if err := os.Link(e.tmp, e.path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("destination %s appeared during the copy: not replaced (the copy is discarded)", e.path)
		}
		return fmt.Errorf("putting the copy in place at %s: %w", e.path, err)
	}
	_ = os.Remove(e.tmp)
	e.tmp = ""
	if d, err := os.Open(filepath.Dir(e.path)); err == nil {
		_ = d.Sync() // the new name survives a crash
		_ = d.Close()
	}
	return nil
}

// leftover says what a failed copy left in the destination and how to clear it.
func (e *end) leftover() string {
	if e.etcd == nil {
		return " (nothing was written to " + e.path + ")"
	}
	return fmt.Sprintf(" (%s may hold a partial copy: stop every gateway that uses it, then clear it with: "+
		"etcdctl --endpoints %s del --prefix %s)", e.db, strings.Join(e.etcd.Client().Endpoints(), ","), e.etcd.Prefix())
}

// refuseNonEmpty refuses a destination that holds a store, saying what it holds and how
// to clear it. kv.Copy checks emptiness as well; this check explains itself.
func refuseNonEmpty(dst *end) error {
	var empty bool
	if err := dst.db.View(func(tx kv.Tx) error {
		empty = true
		return tx.ForEachBucket(func([]byte) error { empty = false; return nil })
	}); err != nil {
		return fmt.Errorf("reading destination %s: %w", dst.db, err)
	}
	if empty {
		return nil
	}
	what, err := describe(dst.db)
	if err != nil {
		what = "a store"
	}
	clear := "remove the file"
	if dst.etcd != nil {
		clear = fmt.Sprintf("stop every gateway that uses it, then clear it with: etcdctl --endpoints %s del --prefix %s",
			strings.Join(dst.etcd.Client().Endpoints(), ","), dst.etcd.Prefix())
	}
	return fmt.Errorf("destination %s is not empty: it holds %s. store copy only fills an empty store: %s, or choose another prefix", dst.db, what, clear)
}

// describe summarises a store: its keys per top-level bucket and its journals' heads.
func describe(db kv.DB) (string, error) {
	var sum kv.Summary
	var heads []journal.Head
	err := db.View(func(tx kv.Tx) error {
		var err error
		if sum, err = kv.Summarize(tx); err != nil {
			return err
		}
		heads, _ = journal.Heads(tx) // a store that is not scimgate's has none
		return nil
	})
	if err != nil {
		return "", err
	}
	keys, top := totals(sum.Keys)
	s := fmt.Sprintf("%d keys in %d buckets (%s)", keys, len(sum.Keys), top)
	for _, h := range heads {
		s += fmt.Sprintf(", journal %s at seq %d", h.Name, h.Seq)
	}
	return s, nil
}

// totals sums counts and lists the keys per top-level bucket, largest first.
func totals(counts map[string]int) (int, string) {
	byTop := map[string]int{}
	keys := 0
	for path, n := range counts {
		if n > 0 {
			byTop[topOf(path)] += n
			keys += n
		}
	}
	names := make([]string, 0, len(byTop))
	for name := range byTop {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int {
		if byTop[a] != byTop[b] {
			return byTop[b] - byTop[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s %d", name, byTop[name])
	}
	return keys, strings.Join(parts, ", ")
}

// topOf is the top-level bucket of a kv.BucketPath.
func topOf(path string) string {
	if strings.HasPrefix(path, `"`) {
		if q, err := strconv.QuotedPrefix(path); err == nil {
			return q
		}
	}
	top, _, _ := strings.Cut(path, "/")
	return top
}

// result is what a verified copy reports.
type result struct {
	sum      kv.Summary
	heads    []journal.Head
	reports  map[string]*journal.Report
	revision int64 // the etcd revision copied (0: a bbolt source)
	took     time.Duration
}

// copyStore copies src into the empty dst and verifies the copy: the keys per bucket, the
// digest of all data and every journal's head match what the copy read from src (in the
// same read transaction), and every journal in dst verifies.
func copyStore(ctx context.Context, dst, src kv.DB) (*result, error) {
	res := &result{reports: map[string]*journal.Report{}}
	err := kv.CopySnapshot(dst, src, func(tx kv.Tx) error {
		var err error
		if res.sum, err = kv.Summarize(tx); err != nil {
			return fmt.Errorf("reading the source: %w", err)
		}
		if len(res.sum.Keys) == 0 {
			return fmt.Errorf("source %s is empty: nothing to copy", src)
		}
		if res.heads, err = journal.Heads(tx); err != nil {
			return fmt.Errorf("reading the source's journal heads: %w", err)
		}
		res.revision, _ = etcdkv.Revision(tx)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var sum kv.Summary
	var heads []journal.Head
	if err := dst.View(func(tx kv.Tx) error {
		var err error
		if sum, err = kv.Summarize(tx); err != nil {
			return err
		}
		heads, err = journal.Heads(tx)
		return err
	}); err != nil {
		return nil, fmt.Errorf("verifying the copy in %s: %w", dst, err)
	}
	if diff := diffCounts(res.sum.Keys, sum.Keys); diff != "" {
		return nil, fmt.Errorf("the copy in %s does not match the source: %s", dst, diff)
	}
	if sum.Digest != res.sum.Digest {
		return nil, fmt.Errorf("the copy in %s does not match the source: the same keys per bucket, but different data", dst)
	}
	if !slices.Equal(res.heads, heads) {
		return nil, fmt.Errorf("the copy in %s does not match the source: journal heads %v, source %v", dst, heads, res.heads)
	}
	for _, h := range heads {
		rep, err := journal.VerifyDB(ctx, dst, h.Name, nil)
		if err != nil {
			return nil, fmt.Errorf("verifying journal %s in %s: %w", h.Name, dst, err)
		}
		if !rep.OK {
			return nil, fmt.Errorf("journal %s in %s does not verify: first bad sequence number %d (%s): %s; "+
				"the copy holds what the source held: check the source (scimgate journal verify)",
				h.Name, dst, rep.FirstBad.Seq, rep.FirstBad.Kind, rep.FirstBad.Detail)
		}
		if rep.Records > 0 && (rep.LastSeq != h.Seq || rep.LastHash != h.Hash) {
			return nil, fmt.Errorf("journal %s in %s verifies up to seq %d, but its head is seq %d", h.Name, dst, rep.LastSeq, h.Seq)
		}
		res.reports[h.Name] = rep
	}
	return res, nil
}

// maxDiffs bounds the differences a failed comparison names.
const maxDiffs = 5

// diffCounts names the buckets whose key counts differ ("" when none do).
func diffCounts(want, got map[string]int) string {
	paths := map[string]bool{}
	for p := range want {
		paths[p] = true
	}
	for p := range got {
		paths[p] = true
	}
	sorted := make([]string, 0, len(paths))
	for p := range paths {
		sorted = append(sorted, p)
	}
	slices.Sort(sorted)
	var diffs []string
	for _, p := range sorted {
		w, inW := want[p]
		g, inG := got[p]
		switch {
		case !inG:
			diffs = append(diffs, fmt.Sprintf("bucket %s missing", p))
		case !inW:
			diffs = append(diffs, fmt.Sprintf("bucket %s not in the source", p))
		case w != g:
			diffs = append(diffs, fmt.Sprintf("bucket %s has %d keys, the source %d", p, g, w))
		}
	}
	if len(diffs) > maxDiffs {
		diffs = append(diffs[:maxDiffs], fmt.Sprintf("and %d more", len(diffs)-maxDiffs))
	}
	return strings.Join(diffs, "; ")
}

// name is what the report calls an end: the file the user named, or the etcd store.
func (e *end) name() string {
	if e.path != "" {
		return e.path
	}
	return e.db.String()
}

func (r *result) print(w io.Writer, src, dst *end) {
	keys, top := totals(r.sum.Keys)
	fmt.Fprintf(w, "OK: copied %s to %s in %s, verified\n", src.name(), dst.name(), r.took.Round(time.Millisecond))
	if r.revision > 0 {
		fmt.Fprintf(w, "  source read at etcd revision %d (writes after it are not in the copy)\n", r.revision)
	}
	fmt.Fprintf(w, "  %d keys in %d buckets, the same keys and values as the source, digest %x (%s)\n", keys, len(r.sum.Keys), r.sum.Digest[:8], top)
	for _, h := range r.heads {
		rep := r.reports[h.Name]
		hash := h.Hash
		if len(hash) > 16 {
			hash = hash[:16]
		}
		fmt.Fprintf(w, "  journal %s: %d records, %d checkpoints, head seq %d %s: verifies, the same head as the source\n",
			h.Name, rep.Records, rep.Checkpoints, h.Seq, hash)
	}
	if len(r.heads) == 0 {
		fmt.Fprintln(w, "  no journal in the store")
	}
}
