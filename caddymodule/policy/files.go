package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/util"
	"github.com/scimgate/scimgate/caddymodule/internal/regfile"
)

// sourceKind says how a loaded file is used.
type sourceKind string

const (
	kindRego      sourceKind = "rego"      // a policy module
	kindMounted   sourceKind = "mounted"   // data.json/data.yaml below Dir, mounted at its directory
	kindExtraData sourceKind = "extradata" // an Options.DataFiles entry, merged at the data root
)

// source is one file that goes into a compiled policy, read once so that the hash and the
// compilation see the same bytes even if the file changes in between.
type source struct {
	kind  sourceKind
	name  string   // path as given (Dir joined with the relative path): errors and print() locations show it
	mount []string // data path the file's object is placed under (mounted data files only)
	bytes []byte
}

// hashVersion changes whenever the way sources are compiled changes, so a hash never names
// two different compilations.
const hashVersion = "scimgate-policy/2 regov1 strict-builtins print sandboxed-builtins no-allow-net local-schema-refs"

// hashSources is the content hash Engine.Hash reports and the compiled-policy cache is keyed
// by. Every field is length-prefixed so no two different source sets hash alike.
func hashSources(query string, srcs []source) string {
	h := sha256.New()
	writeField := func(s string) {
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	writeField(hashVersion)
	writeField(query)
	for _, s := range srcs {
		writeField(string(s.kind))
		writeField(s.name)
		writeField(strings.Join(s.mount, "/"))
		h.Write([]byte(strconv.Itoa(len(s.bytes))))
		h.Write([]byte{':'})
		h.Write(s.bytes)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// collectSources reads every policy and data file the options name, in a deterministic
// order (lexical within Dir, then DataFiles as listed).
func collectSources(opts *Options) ([]source, error) {
	srcs, err := walkPolicyDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	var nRego int
	for _, s := range srcs {
		if s.kind == kindRego {
			nRego++
		}
	}
	if nRego == 0 {
		return nil, fmt.Errorf("no policies in %s: add at least one .rego file (files ending in _test.rego are tests and are not loaded) defining package scimgate with a decision rule", opts.Dir)
	}
	for _, name := range opts.DataFiles {
		bs, err := readSource(name)
		if err != nil {
			return nil, fmt.Errorf("reading policy data file: %w", err)
		}
		srcs = append(srcs, source{kind: kindExtraData, name: name, bytes: bs})
	}
	return srcs, nil
}

// walkPolicyDir finds *.rego (but not *_test.rego) and data.json/data.yaml/data.yml files
// below dir. Names starting with "." are skipped: they are editor, VCS or Kubernetes
// ConfigMap internals (a ConfigMap mount holds every file twice, once under "..data").
// Symbolic links to files are followed (ConfigMap files are symlinks); links to
// directories are not, so a link cycle cannot make loading loop.
func walkPolicyDir(dir string) ([]source, error) {
	info, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("policy directory %s does not exist: create it with the policies (for example a copy of the shipped policies/ directory) or fix the path in the configuration", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("reading policy directory: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("policy directory %s is a file, not a directory: point the configuration at the directory that holds the .rego files", dir)
	}
	var srcs []source
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("reading policy directory: %w", err)
		}
		if p != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		kind, ok := classify(d.Name())
		if !ok || d.IsDir() || !isRegularFile(p, d) {
			return nil
		}
		bs, err := readSource(p)
		if err != nil {
			return fmt.Errorf("reading policy file: %w", err)
		}
		s := source{kind: kind, name: p, bytes: bs}
		if kind == kindMounted {
			s.mount, err = mountPath(dir, p)
			if err != nil {
				return err
			}
		}
		srcs = append(srcs, s)
		return nil
	})
	return srcs, err
}

// maxSourceBytes bounds each policy and data file. The guardrails' settings are a few
// kilobytes; a file past this is a mistake (a log or a dump named by accident), and
// reading it whole, then decoding and compiling it, would take many times its size in
// memory, in the process that serves the gateway.
const maxSourceBytes = 64 << 20

// readSource reads a policy or data file, which must be a regular file of at most
// maxSourceBytes: a FIFO or a device (a `data /dev/stdin`) would hang the load, or read
// until memory runs out (/dev/zero), holding Caddy's config load with it.
func readSource(name string) ([]byte, error) {
	bs, err := regfile.Read(name, maxSourceBytes)
	var notRegular *regfile.NotRegularError
	var tooLarge *regfile.TooLargeError
	switch {
	case errors.As(err, &notRegular):
		return nil, fmt.Errorf("%w: name a JSON or YAML file", err)
	case errors.As(err, &tooLarge):
		return nil, fmt.Errorf("%s is %d bytes, more than the %d MiB a policy file may hold: name the right file, or keep large data out of the policy", name, tooLarge.Size, maxSourceBytes>>20)
	}
	return bs, err
}

// classify says whether a file name is a policy or a mounted data file.
func classify(name string) (sourceKind, bool) {
	switch {
	case strings.HasSuffix(name, "_test.rego"):
		return "", false
	case strings.HasSuffix(name, ".rego"):
		return kindRego, true
	case name == "data.json" || name == "data.yaml" || name == "data.yml":
		return kindMounted, true
	}
	return "", false
}

func isRegularFile(p string, d fs.DirEntry) bool {
	if d.Type().IsRegular() {
		return true
	}
	if d.Type()&fs.ModeSymlink == 0 {
		return false
	}
	info, err := os.Stat(p)
	return err == nil && info.Mode().IsRegular()
}

// mountPath is the data path of a data file below dir: its directory relative to dir, as in
// an OPA bundle (policies/scimgate/data.json is data.scimgate).
func mountPath(dir, file string) ([]string, error) {
	rel, err := filepath.Rel(dir, filepath.Dir(file))
	if err != nil {
		return nil, fmt.Errorf("locating data file %s: %w", file, err)
	}
	rel = filepath.ToSlash(rel)
	if rel == "." {
		return nil, nil
	}
	return strings.Split(path.Clean(rel), "/"), nil
}

// parseDataFile decodes a data file, which must hold an object, and holds nothing the
// decoder would read differently from what it says (checkUnambiguous). Numbers stay
// json.Number so large integers are not rounded through float64.
func parseDataFile(s source) (map[string]any, error) {
	if err := checkUnambiguous(s); err != nil {
		return nil, err
	}
	var v any
	var err error
	if isYAML(s.name) {
		err = util.Unmarshal(s.bytes, &v)
	} else {
		err = util.UnmarshalJSON(s.bytes, &v)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: invalid %s: %s; fix the syntax", locate(s, err), dataFormat(s.name), err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: a data file must hold an object (its keys become data.%s), got %s; wrap the value in an object", s.name, strings.Join(slices.Concat(s.mount, []string{"<key>"}), "."), jsonKind(v))
	}
	return obj, nil
}

func isYAML(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".yaml" || ext == ".yml"
}

func dataFormat(name string) string {
	if isYAML(name) {
		return "YAML"
	}
	return "JSON"
}

// locate names the file and, for JSON syntax errors, the row and column.
func locate(s source, err error) string {
	var syn *json.SyntaxError
	if !errors.As(err, &syn) || syn.Offset <= 0 || syn.Offset > int64(len(s.bytes)) {
		return s.name
	}
	before := s.bytes[:syn.Offset]
	row := 1 + strings.Count(string(before), "\n")
	col := len(before) - strings.LastIndexByte(string(before), '\n')
	return fmt.Sprintf("%s:%d:%d", s.name, row, col)
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null (an empty file?)"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	}
	return fmt.Sprintf("%T", v)
}
