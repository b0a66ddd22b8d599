package journal

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
)

// OCSF classes and values used by the OCSF export (see doc.go for the full mapping).
const (
	ocsfVersion         = "1.1.0"
	ocsfClassBase       = 0    // Base Event: records about no resource (prune)
	ocsfClassAccount    = 3001 // Account Change
	ocsfClassGroup      = 3006 // Group Management
	ocsfCategoryIAM     = 3    // Identity & Access Management
	ocsfCategoryNone    = 0    // Uncategorized
	ocsfActivityOther   = 99
	ocsfStatusUnknown   = 0
	ocsfStatusSuccess   = 1
	ocsfStatusFailure   = 2
	ocsfSeverityInfo    = 1
	ocsfSeverityLow     = 2
	ocsfSeverityMedium  = 3
	ocsfProductName     = "scimgate"
	ocsfProductVendor   = "scimgate"
	ocsfProductFeatures = "journal"
)

type (
	ocsfEvent struct {
		ClassUID     int          `json:"class_uid"`
		ClassName    string       `json:"class_name"`
		CategoryUID  int          `json:"category_uid"`
		CategoryName string       `json:"category_name"`
		ActivityID   int          `json:"activity_id"`
		ActivityName string       `json:"activity_name"`
		TypeUID      int          `json:"type_uid"`
		Time         int64        `json:"time"`
		SeverityID   int          `json:"severity_id"`
		StatusID     int          `json:"status_id"`
		Status       string       `json:"status,omitempty"`
		StatusCode   string       `json:"status_code,omitempty"`
		StatusDetail string       `json:"status_detail,omitempty"`
		Message      string       `json:"message,omitempty"`
		Metadata     ocsfMetadata `json:"metadata"`
		Actor        *ocsfActor   `json:"actor,omitempty"`
		User         *ocsfObject  `json:"user,omitempty"`
		Group        *ocsfObject  `json:"group,omitempty"`
		Unmapped     ocsfUnmapped `json:"unmapped"`
	}
	ocsfMetadata struct {
		Product       ocsfProduct `json:"product"`
		Version       string      `json:"version"`
		UID           string      `json:"uid"`
		CorrelationID string      `json:"correlation_uid,omitempty"`
	}
	ocsfProduct struct {
		Name       string `json:"name"`
		VendorName string `json:"vendor_name"`
		Feature    struct {
			Name string `json:"name"`
		} `json:"feature"`
	}
	// ocsfUnmapped carries the record fields OCSF has no place for.
	ocsfUnmapped struct {
		JournalHash string          `json:"journal_hash"`
		Action      string          `json:"action,omitempty"`
		Events      []string        `json:"events,omitempty"`
		Target      string          `json:"target,omitempty"`
		NativeID    string          `json:"native_id,omitempty"`
		FilterHash  string          `json:"filter_hash,omitempty"`
		Changes     json.RawMessage `json:"changes,omitempty"`
		Decision    json.RawMessage `json:"decision,omitempty"`
		Backend     json.RawMessage `json:"backend,omitempty"`
	}
	ocsfActor struct {
		User ocsfObject `json:"user"`
	}
	ocsfObject struct {
		UID  string `json:"uid,omitempty"`
		Name string `json:"name,omitempty"`
	}
)

type ocsfEncoder struct{}

func (ocsfEncoder) begin(*bytes.Buffer, *jsonlAnchor) error    { return nil }
func (ocsfEncoder) checkpoint(*bytes.Buffer, Checkpoint) error { return nil }
func (ocsfEncoder) end(*bytes.Buffer, jsonlEnd) error          { return nil }

func (ocsfEncoder) record(buf *bytes.Buffer, seq uint64, h [32]byte, raw []byte) error {
	r, err := viewRecord(seq, raw)
	if err != nil {
		return err
	}
	return writeJSONLine(buf, toOCSF(r, h))
}

// toOCSF maps one record to an OCSF event.
func toOCSF(r *recordView, h [32]byte) ocsfEvent {
	t, _ := time.Parse(time.RFC3339Nano, r.time)
	e := ocsfEvent{
		Time:         t.UnixMilli(),
		StatusID:     ocsfStatus(r.outcome),
		Status:       r.outcome,
		StatusDetail: r.errorMsg,
		SeverityID:   ocsfSeverity(r.outcome),
		Metadata: ocsfMetadata{
			Product: ocsfProduct{Name: ocsfProductName, VendorName: ocsfProductVendor},
			Version: ocsfVersion, UID: strconv.FormatUint(r.seq, 10), CorrelationID: r.requestID,
		},
		Unmapped: ocsfUnmapped{
			JournalHash: hex.EncodeToString(h[:]), Action: r.action, Events: r.events,
			Target: r.target, NativeID: r.nativeID, FilterHash: r.filterHash,
			Changes: r.changes, Decision: r.decision, Backend: r.backend,
		},
	}
	e.Metadata.Product.Feature.Name = ocsfProductFeatures
	if r.status != 0 {
		e.StatusCode = strconv.Itoa(r.status)
	}
	if r.client != "" {
		e.Actor = &ocsfActor{User: ocsfObject{Name: r.client}}
	}
	subject := &ocsfObject{UID: r.scimID, Name: r.subject}
	switch r.resourceType {
	case "User":
		e.ClassUID, e.ClassName = ocsfClassAccount, "Account Change"
		e.CategoryUID, e.CategoryName = ocsfCategoryIAM, "Identity & Access Management"
		e.ActivityID, e.ActivityName = accountActivity(r.events)
		e.User = subject
	case "Group":
		e.ClassUID, e.ClassName = ocsfClassGroup, "Group Management"
		e.CategoryUID, e.CategoryName = ocsfCategoryIAM, "Identity & Access Management"
		e.ActivityID, e.ActivityName = groupActivity(r.events)
		e.Group = subject
	default:
		e.ClassUID, e.ClassName = ocsfClassBase, "Base Event"
		e.CategoryUID, e.CategoryName = ocsfCategoryNone, "Uncategorized"
		e.ActivityID, e.ActivityName = ocsfActivityOther, "Other"
	}
	if operatorAction(r.action) {
		// An operator's retry or drop of a queued change carries the change's events but
		// does not make it: the delivery records say what reached the app.
		e.ActivityID = ocsfActivityOther
	}
	if e.ActivityID == ocsfActivityOther && r.action != "" {
		e.ActivityName = r.action
	}
	e.TypeUID = e.ClassUID*100 + e.ActivityID
	e.Message = strings.TrimSpace(fmt.Sprintf("%s %s %s", r.action, r.resourceType, r.subject)) + ": " + r.outcome
	return e
}

// operatorAction reports whether action is an operator's action on an outbox (retry,
// drop, pause, resume), which changes no account or group by itself.
func operatorAction(action string) bool {
	switch change.Action(action) {
	case change.ActionRetry, change.ActionDrop, change.ActionPause, change.ActionResume:
		return true
	}
	return false
}

// accountActivity maps a User record's events to an Account Change activity. A record with
// several events takes the most significant one.
func accountActivity(events []string) (int, string) {
	switch {
	case slices.Contains(events, string(change.Delete)):
		return 6, "Delete"
	case slices.Contains(events, string(change.Create)):
		return 1, "Create"
	case slices.Contains(events, string(change.Deactivate)):
		return 5, "Disable"
	case slices.Contains(events, string(change.Reactivate)):
		return 2, "Enable"
	}
	return ocsfActivityOther, "Other"
}

// groupActivity maps a Group record's events to a Group Management activity. Adding and
// removing members in one request is Other (both are listed in unmapped.events).
func groupActivity(events []string) (int, string) {
	add, remove := slices.Contains(events, string(change.AddMembers)), slices.Contains(events, string(change.RemoveMembers))
	switch {
	case slices.Contains(events, string(change.Delete)):
		return 5, "Delete"
	case slices.Contains(events, string(change.Create)):
		return 6, "Create"
	case add && !remove:
		return 3, "Add User"
	case remove && !add:
		return 4, "Remove User"
	}
	return ocsfActivityOther, "Other"
}

func ocsfStatus(outcome string) int {
	switch change.Outcome(outcome) {
	case change.Applied, change.Skipped, change.DryRun, change.Queued, change.Delivered:
		return ocsfStatusSuccess
	case change.Rejected, change.Failed, change.Denied, change.Dead:
		return ocsfStatusFailure
	}
	return ocsfStatusUnknown
}

func ocsfSeverity(outcome string) int {
	switch change.Outcome(outcome) {
	case change.Denied, change.Failed, change.Dead:
		return ocsfSeverityMedium
	case change.Rejected:
		return ocsfSeverityLow
	}
	return ocsfSeverityInfo
}
