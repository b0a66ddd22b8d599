package policy

import (
	"fmt"
	"strings"
)

// dataDoc is the base data document built from every data file, remembering which file put
// each value there so a conflict can name both files.
type dataDoc struct {
	root   map[string]any
	owners map[string]string // dotted data path -> file that set it
}

func newDataDoc() *dataDoc {
	return &dataDoc{root: map[string]any{}, owners: map[string]string{}}
}

// add places obj at mount (nil: the data root), merging objects key by key. Two files
// giving the same key a value (other than two objects, which merge) is an error: silently
// letting the later file win would make the effective configuration depend on file order.
func (d *dataDoc) add(file string, mount []string, obj map[string]any) error {
	parent := d.root
	for i, seg := range mount {
		child, ok := parent[seg]
		if !ok {
			next := map[string]any{}
			parent[seg] = next
			d.owners[dataPath(mount[:i+1])] = file
			parent = next
			continue
		}
		next, ok := child.(map[string]any)
		if !ok {
			return d.conflict(file, mount[:i+1])
		}
		parent = next
	}
	return d.merge(file, mount, parent, obj)
}

func (d *dataDoc) merge(file string, at []string, dst, src map[string]any) error {
	for k, v := range src {
		p := append(at[:len(at):len(at)], k)
		existing, ok := dst[k]
		if !ok {
			dst[k] = v
			d.owners[dataPath(p)] = file
			continue
		}
		dstObj, dstIsObj := existing.(map[string]any)
		srcObj, srcIsObj := v.(map[string]any)
		if !dstIsObj || !srcIsObj {
			return d.conflict(file, p)
		}
		if err := d.merge(file, p, dstObj, srcObj); err != nil {
			return err
		}
	}
	return nil
}

func (d *dataDoc) conflict(file string, p []string) error {
	other := d.owner(p)
	return fmt.Errorf("data conflict: %s sets %s, which %s already sets; keep each key in one data file", file, dataPath(p), other)
}

// owner finds the file that set p or the nearest enclosing value.
func (d *dataDoc) owner(p []string) string {
	for i := len(p); i > 0; i-- {
		if f, ok := d.owners[dataPath(p[:i])]; ok {
			return f
		}
	}
	return "another data file"
}

// exists reports whether the data document defines path or a non-object value above it;
// the compiler calls it to reject rules that would overlap data (the two could not both be
// the value of that path).
func (d *dataDoc) exists(path []string) (bool, error) {
	var cur any = d.root
	for _, seg := range path {
		obj, ok := cur.(map[string]any)
		if !ok {
			return true, nil // a scalar or array above the rule's path
		}
		if cur, ok = obj[seg]; !ok {
			return false, nil
		}
	}
	return true, nil
}

func dataPath(p []string) string {
	return "data." + strings.Join(p, ".")
}
