package reconcile

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"slices"
	"sort"
)

// seenSet holds the native ids the app listed, as 8-byte hashes (seeded per run, so no
// one can choose ids that collide): the hashes added lately in a small set, merged now and
// then into a sorted list in memory, which, once it holds seenSpill hashes, is written out
// as a sorted run to a temporary file in dir (Options.TempDir). So a reconcile holds at most about 100 KB of them in
// memory whatever the app's size, plus a fence (8 bytes) per seenBlock hashes on disk;
// runs are merged as they pile up (two of like size into one), so that a lookup reads one
// block from each of at most log2(accounts / seenSpill) files. An account listed a second
// time (pages that overlapped because the app changed while it was listed) is found as it
// arrives, and counted and compared once.
//
// A set that could not write or read its files fails its calls from then on: an account
// taken as not listed would be reported missing (and created by a fix), one taken as
// listed would be skipped, so neither guess is made.
type seenSet struct {
	seed   maphash.Seed
	sorted []uint64            // merged, in order
	recent map[uint64]struct{} // added since the last merge, at most seenRecent
	runs   []*seenRun          // written out, oldest (largest) first
	// spillAt is how many hashes the list holds before it is written out (seenSpill; tests
	// make it small).
	spillAt int
	// dir is where the runs are written ("": the system's temporary directory).
	dir string
	err error
}

// seenRecent is how many hashes wait in the set before they are merged into the list: a
// merge costs one pass over the list.
const seenRecent = 4096

// seenSpill is how many hashes the sorted list holds before it is written out: 64 KB.
const seenSpill = 8192

// seenSpillAt is the spillAt of new sets: seenSpill, less in tests.
var seenSpillAt = seenSpill

// seenBlock is how many hashes of a run one lookup reads (4 KB), found by the run's fences.
const seenBlock = 512

func newSeenSet(dir string) *seenSet {
	return &seenSet{seed: maphash.MakeSeed(), spillAt: seenSpillAt, dir: dir}
}

// add adds id; false when it was there already.
func (s *seenSet) add(id string) (bool, error) {
	h := maphash.String(s.seed, id)
	found, err := s.contains(h)
	if err != nil || found {
		return false, err
	}
	if s.recent == nil {
		s.recent = make(map[uint64]struct{}, seenRecent)
	}
	s.recent[h] = struct{}{}
	if len(s.recent) >= min(seenRecent, s.spillAt) {
		s.merge()
	}
	return true, s.err
}

func (s *seenSet) has(id string) (bool, error) { return s.contains(maphash.String(s.seed, id)) }

func (s *seenSet) contains(h uint64) (bool, error) {
	if s.err != nil {
		return false, s.err
	}
	if _, ok := s.recent[h]; ok {
		return true, nil
	}
	if _, found := slices.BinarySearch(s.sorted, h); found {
		return true, nil
	}
	for _, r := range s.runs {
		found, err := r.contains(h)
		if err != nil {
			s.fail(err)
			return false, s.err
		}
		if found {
			return true, nil
		}
	}
	return false, nil
}

// merge moves the recent hashes into the sorted list, merging from its end in place, and
// writes the list out once it is full.
func (s *seenSet) merge() {
	add := make([]uint64, 0, len(s.recent))
	for h := range s.recent {
		add = append(add, h)
	}
	slices.Sort(add)
	n := len(s.sorted)
	s.sorted = slices.Grow(s.sorted, len(add))[:n+len(add)]
	i, j := n-1, len(add)-1
	for k := len(s.sorted) - 1; j >= 0; k-- {
		if i >= 0 && s.sorted[i] > add[j] {
			s.sorted[k] = s.sorted[i]
			i--
		} else {
			s.sorted[k] = add[j]
			j--
		}
	}
	clear(s.recent)
	if len(s.sorted) >= s.spillAt {
		s.spill()
	}
}

// spill writes the sorted list out as a run and merges the newest runs while the one
// before the newest is at most twice its size.
func (s *seenSet) spill() {
	r, err := writeRun(s.dir, s.sorted)
	if err != nil {
		s.fail(err)
		return
	}
	s.sorted = s.sorted[:0]
	s.runs = append(s.runs, r)
	for len(s.runs) > 1 {
		a, b := s.runs[len(s.runs)-2], s.runs[len(s.runs)-1]
		if a.n > 2*b.n {
			return
		}
		m, err := mergeRuns(s.dir, a, b)
		if err != nil {
			s.fail(err)
			return
		}
		a.close()
		b.close()
		s.runs = append(s.runs[:len(s.runs)-2], m)
	}
}

func (s *seenSet) fail(err error) {
	if s.err == nil {
		s.err = fmt.Errorf("the set of accounts listed (a temporary file): %w", err)
	}
}

// close removes the set's files.
func (s *seenSet) close() {
	for _, r := range s.runs {
		r.close()
	}
	s.runs = nil
}

// seenRun is a sorted run of hashes in a temporary file (8 bytes each, big-endian), and
// the first hash of each block of seenBlock of them.
type seenRun struct {
	f      *os.File
	n      int
	fences []uint64
	buf    []byte
	// linked is set when the file could not be removed while open (on systems that do not
	// allow it): close removes it.
	linked bool
}

// runWriter writes hashes, in order, to a new run.
type runWriter struct {
	r *seenRun
	w *bufio.Writer
	b [8]byte
}

func newRunWriter(dir string) (*runWriter, error) {
	f, err := os.CreateTemp(dir, "scimgate-reconcile-*.seen")
	if err != nil {
		return nil, err
	}
	// Gone from the directory at once where the system allows it (the open file stays):
	// nothing is left behind by a process that dies; elsewhere close removes it.
	linked := os.Remove(f.Name()) != nil
	return &runWriter{r: &seenRun{f: f, linked: linked}, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

func (w *runWriter) put(h uint64) error {
	if w.r.n%seenBlock == 0 {
		w.r.fences = append(w.r.fences, h)
	}
	w.r.n++
	binary.BigEndian.PutUint64(w.b[:], h)
	_, err := w.w.Write(w.b[:])
	return err
}

func (w *runWriter) finish() (*seenRun, error) {
	if err := w.w.Flush(); err != nil {
		w.r.close()
		return nil, err
	}
	return w.r, nil
}

func writeRun(dir string, hs []uint64) (*seenRun, error) {
	w, err := newRunWriter(dir)
	if err != nil {
		return nil, err
	}
	for _, h := range hs {
		if err := w.put(h); err != nil {
			w.r.close()
			return nil, err
		}
	}
	return w.finish()
}

// mergeRuns writes the hashes of a and b, in order, to a new run.
func mergeRuns(dir string, a, b *seenRun) (*seenRun, error) {
	w, err := newRunWriter(dir)
	if err != nil {
		return nil, err
	}
	ra, rb := a.reader(), b.reader()
	ha, oka, err := ra.next()
	if err != nil {
		w.r.close()
		return nil, err
	}
	hb, okb, err := rb.next()
	for err == nil && (oka || okb) {
		if oka && (!okb || ha <= hb) {
			if err = w.put(ha); err == nil {
				ha, oka, err = ra.next()
			}
		} else if err = w.put(hb); err == nil {
			hb, okb, err = rb.next()
		}
	}
	if err != nil {
		w.r.close()
		return nil, err
	}
	return w.finish()
}

// runReader reads a run's hashes in order.
type runReader struct {
	r    *bufio.Reader
	left int
	b    [8]byte
}

func (r *seenRun) reader() *runReader {
	return &runReader{r: bufio.NewReaderSize(io.NewSectionReader(r.f, 0, int64(r.n)*8), 64<<10), left: r.n}
}

func (rr *runReader) next() (uint64, bool, error) {
	if rr.left == 0 {
		return 0, false, nil
	}
	if _, err := io.ReadFull(rr.r, rr.b[:]); err != nil {
		return 0, false, err
	}
	rr.left--
	return binary.BigEndian.Uint64(rr.b[:]), true, nil
}

// contains reads the one block that may hold h.
func (r *seenRun) contains(h uint64) (bool, error) {
	i := sort.Search(len(r.fences), func(i int) bool { return r.fences[i] > h }) - 1
	if i < 0 {
		return false, nil
	}
	count := min(seenBlock, r.n-i*seenBlock)
	if r.buf == nil {
		r.buf = make([]byte, seenBlock*8)
	}
	buf := r.buf[:count*8]
	if n, err := r.f.ReadAt(buf, int64(i)*seenBlock*8); err != nil && !(errors.Is(err, io.EOF) && n == len(buf)) {
		return false, err
	}
	k := sort.Search(count, func(k int) bool { return binary.BigEndian.Uint64(buf[k*8:]) >= h })
	return k < count && binary.BigEndian.Uint64(buf[k*8:]) == h, nil
}

func (r *seenRun) close() {
	if r.f != nil {
		_ = r.f.Close()
		if r.linked {
			_ = os.Remove(r.f.Name())
		}
		r.f = nil
	}
}
