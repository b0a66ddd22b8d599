package demoapp

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// maxBodyBytes bounds every request body.
const maxBodyBytes = 1 << 20

// readObject reads the request body, bounded to maxBodyBytes, and checks that it is exactly
// one JSON object. A missing Content-Type is taken as JSON (curl -d sends a form type, so
// that one is refused with a hint); any other non-JSON type is refused.
func readObject(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, errorf(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType,
				"Content-Type %q is not JSON; send application/json", ct)
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errorf(http.StatusRequestEntityTooLarge, CodePayloadTooLarge, "the body is larger than %d bytes", maxBodyBytes)
		}
		return nil, errorf(http.StatusBadRequest, CodeInvalidJSON, "reading the body: %v", err)
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, errorf(http.StatusBadRequest, CodeInvalidJSON, "the body is empty; a JSON object is required")
	}
	if !json.Valid(trimmed) {
		return nil, errorf(http.StatusBadRequest, CodeInvalidJSON, "the body is not valid JSON")
	}
	if trimmed[0] != '{' {
		return nil, errorf(http.StatusBadRequest, CodeInvalidJSON, "the body must be a JSON object")
	}
	return trimmed, nil
}

// readFields reads a JSON object body (readObject) and refuses the read-only fields it sets
// (rejectReadOnly; none when readOnly is empty).
func readFields(w http.ResponseWriter, r *http.Request, readOnly map[string]string) ([]byte, *apiError) {
	body, err := readObject(w, r)
	if err != nil || len(readOnly) == 0 {
		return body, err
	}
	if err := rejectReadOnly(body, readOnly); err != nil {
		return nil, err
	}
	return body, nil
}

// decodeFields is readFields decoded strictly (decodeStrict) into a T.
func decodeFields[T any](w http.ResponseWriter, r *http.Request, readOnly map[string]string) (T, *apiError) {
	var in T
	body, err := readFields(w, r, readOnly)
	if err != nil {
		return in, err
	}
	if err := decodeStrict(body, &in); err != nil {
		return in, err
	}
	return in, nil
}

// decodeStrict decodes a JSON object (already checked by readObject) into v, refusing
// unknown fields, and turns decoding errors into messages that name the field.
func decodeStrict(data []byte, v any) *apiError {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	return nil
}

func decodeError(err error) *apiError {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := typeErr.Field
		if field == "" {
			field = "the body"
		}
		return invalid("%s must be %s, not %s", field, kindName(typeErr.Type), typeErr.Value)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	return invalid("%s", msg)
}

// kindName names a Go type the way a JSON client thinks of it.
func kindName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	default:
		return t.String()
	}
}

// rejectReadOnly refuses a body that sets a field clients cannot write. The hint says how
// to change it instead, because a legacy API that silently ignored such a field would hide
// mapping mistakes.
func rejectReadOnly(data []byte, fields map[string]string) *apiError {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return decodeError(err)
	}
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		if _, ok := top[name]; ok {
			return errorf(http.StatusBadRequest, CodeReadOnlyField, "%s is read-only%s", name, fields[name])
		}
	}
	return nil
}

// mergePatch applies an RFC 7396 JSON merge patch to the writable fields cur and decodes
// the result strictly into a new value: null removes a field (it becomes empty), an object
// merges into the object it names, anything else replaces.
func mergePatch[T any](cur T, patch []byte) (T, *apiError) {
	var zero T
	doc, err := toMap(cur)
	if err != nil {
		return zero, errorf(http.StatusInternalServerError, "INTERNAL", "encoding the current record: %v", err)
	}
	var p map[string]any
	dec := json.NewDecoder(bytes.NewReader(patch))
	dec.UseNumber() // keeps integers exact through the round trip
	if err := dec.Decode(&p); err != nil {
		return zero, decodeError(err)
	}
	merged, err := json.Marshal(mergeInto(doc, p))
	if err != nil {
		return zero, errorf(http.StatusInternalServerError, "INTERNAL", "encoding the merged record: %v", err)
	}
	var out T
	if err := decodeStrict(merged, &out); err != nil {
		return zero, err
	}
	return out, nil
}

func toMap(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	return m, dec.Decode(&m)
}

func mergeInto(target, patch map[string]any) map[string]any {
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(target, k)
		case map[string]any:
			tv, _ := target[k].(map[string]any)
			if tv == nil {
				tv = map[string]any{}
			}
			target[k] = mergeInto(tv, pv)
		default:
			target[k] = v
		}
	}
	return target
}

// joinIDs formats ids for a message: "3, 5, 8".
func joinIDs(ids []int64) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.FormatInt(id, 10)
	}
	return strings.Join(parts, ", ")
}
