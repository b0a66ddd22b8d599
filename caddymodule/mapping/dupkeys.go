package mapping

import (
	"encoding/json"
	"fmt"
)

// repeatedKey finds the first object key written twice in one object of body, valid
// JSON: gjson reads the first of them, while the app's own stack (JavaScript, Python, Go's
// encoding/json) takes the last, so an id, a list or a value read from such an answer may
// not be the one the app meant. One pass, no recursion; keys are compared after their
// escapes are read ("a" and "\u0061" are one key).
func repeatedKey(body []byte) (string, bool) {
	var stack []map[string]bool // one per open object; nil for an open list
	expectKey := false
	for i := 0; i < len(body); i++ {
		switch c := body[i]; c {
		case '{':
			stack = append(stack, map[string]bool{})
			expectKey = true
		case '[':
			stack = append(stack, nil)
			expectKey = false
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			expectKey = false
		case ',':
			expectKey = len(stack) > 0 && stack[len(stack)-1] != nil
		case '"':
			start, escaped := i, false
			for i++; i < len(body) && body[i] != '"'; i++ {
				if body[i] == '\\' {
					escaped = true
					i++
				}
			}
			if !expectKey {
				continue
			}
			expectKey = false
			key := string(body[start+1 : i])
			if escaped {
				if json.Unmarshal(body[start:i+1], &key) != nil {
					continue
				}
			}
			top := stack[len(stack)-1]
			if top[key] {
				return key, true
			}
			top[key] = true
		}
	}
	return "", false
}

// ambiguous is the error for an answer that holds a key twice in one object.
func ambiguous(body []byte) error {
	if k, ok := repeatedKey(body); ok {
		return fmt.Errorf("the answer holds the key %q twice in one object, so what it says is ambiguous", k)
	}
	return nil
}
