package scim

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"unicode/utf8"
)

// DefaultMaxJSONDepth is the default bound on JSON nesting in request bodies.
const DefaultMaxJSONDepth = 64

// CheckJSON validates a request body before any recursive parsing: it must be valid UTF-8,
// nest no deeper than maxDepth, be one syntactically valid JSON value, and repeat no object
// key (SCIM attribute names are case-insensitive, so "userName" and "USERNAME" in one object
// are a duplicate too). The depth scan is a flat loop, so a 500,000-deep array costs one
// pass and no stack. Errors are 400 invalidSyntax with a detail naming the problem.
func CheckJSON(data []byte, maxDepth int) error {
	if maxDepth <= 0 {
		maxDepth = DefaultMaxJSONDepth
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return BadRequest(TypeInvalidSyntax, "the request body is empty; send a JSON object")
	}
	if !utf8.Valid(data) {
		return BadRequest(TypeInvalidSyntax, "the request body is not valid UTF-8")
	}
	if err := checkDepth(data, maxDepth); err != nil {
		return err
	}
	return checkSyntaxAndKeys(data)
}

// checkDepth counts brackets outside strings. It does not validate syntax: that is the
// next step's job, which may then rely on the nesting being bounded.
func checkDepth(data []byte, maxDepth int) error {
	depth, inString, escaped := 0, false, false
	for i, c := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > maxDepth {
				return BadRequest(TypeInvalidSyntax, "the request body nests JSON deeper than %d levels (at byte %d); SCIM resources need far fewer", maxDepth, i)
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

type jsonFrame struct {
	object    bool
	expectKey bool
	keys      map[string]struct{}
}

// checkSyntaxAndKeys walks the token stream (encoding/json's Decoder keeps its own stack
// in a slice, not on the Go stack) and records the keys of each object.
func checkSyntaxAndKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var stack []*jsonFrame
	started := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return syntaxError(err)
		}
		if len(stack) == 0 {
			if started {
				return BadRequest(TypeInvalidSyntax, "the request body holds more than one JSON value; send exactly one object")
			}
			started = true
		}
		var top *jsonFrame
		if n := len(stack); n > 0 {
			top = stack[n-1]
		}
		if top != nil && top.object && top.expectKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				markValueDone(stack)
				continue
			}
			key, _ := tok.(string)
			folded := strings.ToLower(key)
			if _, dup := top.keys[folded]; dup {
				return BadRequest(TypeInvalidSyntax, "the request body repeats the attribute %q in one object (names are case-insensitive); send each attribute once", key)
			}
			top.keys[folded] = struct{}{}
			top.expectKey = false
			continue
		}
		switch d := tok.(type) {
		case json.Delim:
			switch d {
			case '{':
				stack = append(stack, &jsonFrame{object: true, expectKey: true, keys: map[string]struct{}{}})
			case '[':
				stack = append(stack, &jsonFrame{})
			case ']', '}':
				stack = stack[:len(stack)-1]
				markValueDone(stack)
			}
		default:
			markValueDone(stack)
		}
	}
	if len(stack) != 0 {
		return BadRequest(TypeInvalidSyntax, "the request body is not valid JSON: unexpected end of input")
	}
	return nil
}

func markValueDone(stack []*jsonFrame) {
	if n := len(stack); n > 0 && stack[n-1].object {
		stack[n-1].expectKey = true
	}
}

func syntaxError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return BadRequest(TypeInvalidSyntax, "the request body is not valid JSON at byte %d: %s", se.Offset, se.Error())
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return BadRequest(TypeInvalidSyntax, "the request body is not valid JSON: unexpected end of input")
	}
	return BadRequest(TypeInvalidSyntax, "the request body is not valid JSON: %s", err.Error())
}

// DecodeBody runs CheckJSON and decodes the body into a JSON object. A body that is valid
// JSON but not an object is 400 invalidSyntax.
func DecodeBody(data []byte, maxDepth int) (map[string]any, error) {
	if err := CheckJSON(data, maxDepth); err != nil {
		return nil, err
	}
	v, err := Decode(data)
	if err != nil {
		return nil, syntaxError(err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, BadRequest(TypeInvalidSyntax, "the request body must be a JSON object")
	}
	return m, nil
}
