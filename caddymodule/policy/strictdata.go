package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/scimgate/scimgate/caddymodule/internal/jsonkeys"
	"go.yaml.in/yaml/v3"
)

// checkUnambiguous refuses a data file that the decoders would read differently from what
// it says, before it is decoded: the guardrails' settings must mean what the file shows,
// or a reviewer approves one setting and the gateway enforces another.
//
//   - bytes that are not UTF-8: the JSON decoder replaces them with U+FFFD, so a
//     break-glass name or a privileged group name would silently stop matching;
//   - a key given twice in one object: both decoders keep the last one, so
//     `"max_per_hour": 5, ..., "max_per_hour": 100000` is a brake of 100000, and a
//     section followed by `"break_glass": {"enabled": false}` switches the first off;
//   - a YAML file holding more than one document: only the first is read.
//
// Syntax errors are left to the decoder, which reports them with their position.
func checkUnambiguous(s source) error {
	if i := invalidUTF8(s.bytes); i >= 0 {
		return fmt.Errorf("%s: the file is not valid UTF-8 (byte 0x%02x); save the file as UTF-8", at(s, i), s.bytes[i])
	}
	if isYAML(s.name) {
		return checkYAML(s)
	}
	return checkJSON(s)
}

// invalidUTF8 is the offset of the first byte that is not UTF-8, or -1.
func invalidUTF8(bs []byte) int {
	if utf8.Valid(bs) {
		return -1
	}
	for i := 0; i < len(bs); {
		r, size := utf8.DecodeRune(bs[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}

// at names file:row:column of a byte offset.
func at(s source, offset int) string {
	offset = min(max(offset, 0), len(s.bytes))
	before := s.bytes[:offset]
	row := 1 + bytes.Count(before, []byte("\n"))
	col := 1 + utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:])
	return fmt.Sprintf("%s:%d:%d", s.name, row, col)
}

// checkJSON refuses a key given twice in one object of s (jsonkeys.FirstDuplicate).
func checkJSON(s source) error {
	d := jsonkeys.FirstDuplicate(s.bytes)
	if d == nil {
		return nil
	}
	var path []string
	for _, e := range d.Path {
		if e.IsIndex {
			path = appendIndex(path, e.Index)
		} else {
			path = append(path, e.Key)
		}
	}
	return duplicateKey(at(s, d.Offset), d.Key, s.mount, path, "")
}

// appendIndex adds an array index to the last segment of p ("x" becomes "x[1]").
func appendIndex(p []string, i int) []string {
	idx := "[" + strconv.Itoa(i) + "]"
	if len(p) == 0 {
		return append(p, idx)
	}
	p[len(p)-1] += idx
	return p
}

// duplicateKey is the error for key given twice in the object at path (below mount).
func duplicateKey(where, key string, mount, path []string, first string) error {
	obj := "data"
	if segs := slices.Concat(mount, path); len(segs) > 0 {
		obj += "." + strings.ReplaceAll(strings.Join(segs, "."), ".[", "[")
	}
	if first != "" {
		first = " (first at " + first + ")"
	}
	return fmt.Errorf("%s: key %q appears twice in %s%s; only the last one would count: remove the other", where, key, obj, first)
}

// yamlItem is one node of checkYAML's walk, with its data path.
type yamlItem struct {
	node *yaml.Node
	path []string
}

// checkYAML refuses a second document and a key given twice in one mapping (merge keys
// `<<` are not keys: overriding a merged key is what they are for). The walk follows
// aliases once each and does not recurse.
func checkYAML(s source) error {
	dec := yaml.NewDecoder(bytes.NewReader(s.bytes))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		return nil // empty, or a syntax error the decoder reports
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil && !emptyYAML(&next) {
		return fmt.Errorf("%s:%d:%d: the file holds more than one YAML document (separated by ---); only the first would be read: merge them, or put each in a data file of its own", s.name, next.Line, next.Column)
	} else if err != nil && !errors.Is(err, io.EOF) {
		return nil // a syntax error further on: the decoder reports it
	}
	visited := map[*yaml.Node]bool{}
	stack := []yamlItem{{node: &doc}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n := it.node
		if n == nil || visited[n] {
			continue
		}
		visited[n] = true
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				stack = append(stack, yamlItem{node: c, path: it.path})
			}
		case yaml.AliasNode:
			stack = append(stack, yamlItem{node: n.Alias, path: it.path})
		case yaml.SequenceNode:
			for i, c := range n.Content {
				stack = append(stack, yamlItem{node: c, path: appendIndex(slices.Clone(it.path), i)})
			}
		case yaml.MappingNode:
			seen := map[string]*yaml.Node{}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
					stack = append(stack, yamlItem{node: v, path: it.path})
					continue
				}
				if first, ok := seen[k.Value]; ok {
					return duplicateKey(fmt.Sprintf("%s:%d:%d", s.name, k.Line, k.Column), k.Value, s.mount, it.path, fmt.Sprintf("line %d", first.Line))
				}
				seen[k.Value] = k
				stack = append(stack, yamlItem{node: v, path: append(slices.Clone(it.path), k.Value)})
			}
		}
	}
	return nil
}

// emptyYAML reports whether a document holds nothing (a trailing `---`).
func emptyYAML(doc *yaml.Node) bool {
	if len(doc.Content) == 0 {
		return true
	}
	c := doc.Content[0]
	return len(doc.Content) == 1 && c.Kind == yaml.ScalarNode && c.Tag == "!!null" && c.Value == ""
}
