package journal

import (
	"encoding/json"
	"fmt"

	"github.com/tidwall/gjson"
)

// recordView is the part of a stored record the CSV and OCSF exports need, read in one pass
// over the stored bytes. Nested objects stay raw: the OCSF export copies them verbatim, which
// is both faster and more faithful than decoding and re-encoding them.
type recordView struct {
	seq                                    uint64
	time                                   string // RFC 3339, as stored
	requestID, client, target, action      string
	resourceType, scimID, nativeID         string
	subject, outcome, filterHash, errorMsg string
	status                                 int
	events                                 []string
	changePaths                            []string
	changes, decision, backend             json.RawMessage
}

// viewRecord reads raw, which must be a JSON object.
func viewRecord(seq uint64, raw []byte) (*recordView, error) {
	if !gjson.ValidBytes(raw) || len(raw) == 0 || raw[0] != '{' {
		return nil, fmt.Errorf("%w: record %d is not a record (run verify)", ErrCorrupt, seq)
	}
	v := &recordView{}
	gjson.ParseBytes(raw).ForEach(func(k, val gjson.Result) bool {
		v.set(k.Str, val)
		return true
	})
	return v, nil
}

func (v *recordView) set(key string, val gjson.Result) {
	switch key {
	case "seq":
		v.seq = val.Uint()
	case "time":
		v.time = val.Str
	case "request_id":
		v.requestID = val.String()
	case "client":
		v.client = val.String()
	case "target":
		v.target = val.String()
	case "action":
		v.action = val.String()
	case "resource_type":
		v.resourceType = val.String()
	case "scim_id":
		v.scimID = val.String()
	case "native_id":
		v.nativeID = val.String()
	case "subject":
		v.subject = val.String()
	case "outcome":
		v.outcome = val.String()
	case "filter_hash":
		v.filterHash = val.String()
	case "error":
		v.errorMsg = val.String()
	case "status":
		v.status = int(val.Int())
	case "events":
		val.ForEach(func(_, e gjson.Result) bool {
			v.events = append(v.events, e.String())
			return true
		})
	case "changes":
		v.changes = json.RawMessage(val.Raw)
		val.ForEach(func(_, c gjson.Result) bool {
			v.changePaths = append(v.changePaths, c.Get("path").String())
			return true
		})
	case "decision":
		v.decision = json.RawMessage(val.Raw)
	case "backend":
		v.backend = json.RawMessage(val.Raw)
	}
}
