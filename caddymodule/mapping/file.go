package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/scimgate/scimgate/caddymodule/internal/jsonkeys"
)

// The mapping file as written, before compilation. Every object is decoded strictly
// (unknown keys are errors), so a misspelt option fails the load instead of being ignored.

type fileMapping struct {
	Version int                       `json:"version"`
	Headers map[string]string         `json:"headers"`
	Tables  map[string]map[string]any `json:"tables"`
	Users   json.RawMessage           `json:"users"`
	Groups  json.RawMessage           `json:"groups"`
	Expect  *fileExpect               `json:"expect"`
}

type fileResource struct {
	Headers map[string]string `json:"headers"`
	Lookup  json.RawMessage   `json:"lookup"`
	List    json.RawMessage   `json:"list"`
	// ListMembers (groups only): every member of one group, page by page.
	ListMembers json.RawMessage            `json:"list_members"`
	Events      map[string]json.RawMessage `json:"events"`
	Roles       json.RawMessage            `json:"roles"` // groups only: groups are the app's roles
	// CreateBatch: the app's bulk create, for queued delivery (batch.go).
	CreateBatch json.RawMessage `json:"create_batch"`
}

type fileCall struct {
	Method      string                     `json:"method"`
	Path        string                     `json:"path"`
	Headers     map[string]json.RawMessage `json:"headers"`
	Body        *orderedObject             `json:"body"`
	Send        string                     `json:"send"`
	ID          json.RawMessage            `json:"id"`
	Encoding    string                     `json:"encoding"`
	FormKeys    string                     `json:"form_keys"`
	Items       string                     `json:"items"`
	Match       map[string]string          `json:"match"`
	Paging      *filePaging                `json:"paging"`
	Read        map[string]string          `json:"read"`
	Members     string                     `json:"members"`
	BatchSize   int                        `json:"batch_size"`
	MemberTypes []string                   `json:"member_types"`
	Idempotent  *bool                      `json:"idempotent"`
	When        *fileWhen                  `json:"when"`
	Expect      *fileExpect                `json:"expect"`
}

type fileField struct {
	From       string            `json:"from"`
	Value      json.RawMessage   `json:"value"`
	Transforms []json.RawMessage `json:"transforms"`
	Required   bool              `json:"required"`
}

// orderedObject keeps a JSON object's members in file order, so the native body lists its
// fields in the order the user wrote them, and rejects a key written twice (encoding/json
// would silently keep the last one).
type orderedObject struct {
	members []objectMember
}

type objectMember struct {
	key string
	raw json.RawMessage
}

func (o *orderedObject) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("must be an object mapping native paths to fields")
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		if seen[key] {
			return fmt.Errorf("the native path %q is written twice", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		o.members = append(o.members, objectMember{key: key, raw: raw})
	}
	_, err = dec.Token()
	return err
}

// decodeStrict decodes one JSON value into v, rejecting unknown keys and trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			// The file is decoded whole before its parts, so a syntax error is met here with
			// data the whole file: the position is the one an editor shows.
			line, col := position(data, se.Offset)
			return fmt.Errorf("invalid JSON at line %d, column %d: %s", line, col, strings.TrimPrefix(se.Error(), "json: "))
		}
		if errors.Is(err, io.EOF) {
			return errors.New(`the file is empty: a mapping is a JSON object such as {"version": 1, "users": {...}}`)
		}
		if strings.HasPrefix(err.Error(), "json: unknown field ") {
			if known := jsonFields(v); known != "" {
				return fmt.Errorf("%s (want %s)", strings.TrimPrefix(err.Error(), "json: "), known)
			}
		}
		return jsonError(err)
	}
	if _, err := dec.Token(); err == nil {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// jsonError rewords encoding/json errors for people editing a mapping file.
func jsonError(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("invalid JSON: the document ends too early")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		where := te.Field
		if where == "" {
			return fmt.Errorf("expected %s, got a JSON %s", kindName(te.Type), te.Value)
		}
		return fmt.Errorf("%q: expected %s, got a JSON %s", where, kindName(te.Type), te.Value)
	}
	return errors.New(strings.TrimPrefix(err.Error(), "json: "))
}

// kindName says what JSON a Go type is decoded from, for a person editing the file: "an
// object", never the decoder's type name (mapping.fileCall).
func kindName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[json.Number]() {
		return "a number"
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return t.String()
}

// jsonFields lists the keys the object v decodes has ("method, path or body"), for an
// unknown key's error; "" when v is not a struct.
func jsonFields(v any) string {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return ""
	}
	var keys []string
	for f := range t.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	switch len(keys) {
	case 0:
		return ""
	case 1:
		return keys[0]
	}
	return strings.Join(keys[:len(keys)-1], ", ") + " or " + keys[len(keys)-1]
}

// position is the 1-based line and column (in characters) of the byte that made a JSON
// syntax error reported after offset bytes of data.
func position(data []byte, offset int64) (line, col int) {
	at := int(min(max(offset-1, 0), int64(len(data))))
	before := data[:at]
	start := bytes.LastIndexByte(before, '\n') + 1
	return bytes.Count(before, []byte("\n")) + 1, utf8.RuneCount(before[start:]) + 1
}

// checkDuplicateKeys finds the first object key written twice in the file (data, valid
// JSON), anywhere (jsonkeys.FirstDuplicate): encoding/json would keep the last one
// silently, so a second "create" event, "path" or table entry would drop the first without
// a word. It returns the rule of the object holding the key (users.events,
// users.events.create[1].headers) and the key; a body's keys are native paths, reported as
// such with the call's rule.
func checkDuplicateKeys(data []byte) (rule string, err error) {
	d := jsonkeys.FirstDuplicate(data)
	if d == nil {
		return "", nil
	}
	name := ""
	for _, e := range d.Path {
		switch {
		case e.IsIndex:
			name = fmt.Sprintf("%s[%d]", name, e.Index)
		case name == "":
			name = e.Key
		case strings.HasPrefix(name, "tables") || bracketed(name):
			name = fmt.Sprintf("%s[%q]", name, e.Key)
		default:
			name += "." + e.Key
		}
	}
	if strings.HasSuffix(name, ".body") {
		return strings.TrimSuffix(name, ".body"), fmt.Errorf("the native path %q is written twice", d.Key)
	}
	return name, fmt.Errorf("the key %q is written twice (only one would count)", d.Key)
}

// bracketed reports whether the object named rule has keys that rules quote in brackets
// (native paths, header names, gjson paths, SCIM paths), as the compiler's messages do.
func bracketed(rule string) bool {
	for _, s := range []string{".body", ".headers", ".match", ".read", ".equals"} {
		if strings.HasSuffix(rule, s) || rule == s[1:] {
			return true
		}
	}
	return false
}

// isNull reports whether raw is absent or the JSON literal null.
func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}
