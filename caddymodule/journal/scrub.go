package journal

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
)

// redactedText stands, in a record's text (its error, a policy's reasons), where a
// redacted value was.
const redactedText = "[REDACTED]"

// minScrubLen is the shortest redacted value scrubbed from text: a shorter one (a
// one-digit extension, "US") would cut ordinary words and numbers out of messages.
const minScrubLen = 4

// Scrub returns s without the values that the journal redacts from changes (password, and
// the configured paths): an app's error that echoes the request it got ("invalid user
// {..."password":"..."}"), or a policy's reason that quotes an attribute, would otherwise
// repeat them in Entra's error, the journal and the logs. A value cut short at the end of
// s (a message bounded with "…") is scrubbed too.
func (j *Journal) Scrub(changes []Change, s string) string {
	if s == "" || len(changes) == 0 {
		return s
	}
	return scrubText(s, redactedValues(changes, j.redact))
}

// scrubRecord removes the redacted values of r's changes from its text fields, before
// the changes themselves are redacted.
func scrubRecord(r *Record, redact []string) {
	if len(r.Changes) == 0 || (r.Error == "" && (r.Decision == nil || len(r.Decision.Reasons) == 0)) {
		return
	}
	vals := redactedValues(r.Changes, redact)
	if len(vals) == 0 {
		return
	}
	r.Error = scrubText(r.Error, vals)
	if d := r.Decision; d != nil && len(d.Reasons) > 0 {
		var reasons []string
		for i, reason := range d.Reasons {
			if s := scrubText(reason, vals); s != reason {
				if reasons == nil {
					reasons = slices.Clone(d.Reasons)
				}
				reasons[i] = s
			}
		}
		if reasons != nil {
			dc := *d // the decision may be shared with other records of the request
			dc.Reasons = reasons
			r.Decision = &dc
		}
	}
}

// redactedValues lists the texts of the values redactChanges removes from changes:
// strings and numbers, at least minScrubLen bytes, longest first.
func redactedValues(changes []Change, redact []string) []string {
	var out []string
	for _, c := range changes {
		path := normalizePath(c.Path)
		v := bytes.TrimSpace(c.Value)
		if len(v) == 0 {
			continue
		}
		redacted := pathRedacted(path, redact)
		if !redacted && ((v[0] != '{' && v[0] != '[') || !mentionsRedacted(v, redact)) {
			continue
		}
		var doc any
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.UseNumber()
		if dec.Decode(&doc) != nil {
			continue
		}
		collectRedacted(doc, path, redacted, redact, 0, &out)
		if !redacted && hasFoldPrefix(c.Path, "urn:") {
			collectRedacted(doc, "", false, redact, 0, &out)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return slices.Compact(out)
}

// collectRedacted appends to out the leaves of doc that are, or are inside, a redacted
// path (base is doc's normalised path; in says doc itself is redacted).
func collectRedacted(doc any, base string, in bool, redact []string, depth int, out *[]string) {
	if depth > maxRedactDepth {
		return
	}
	switch v := doc.(type) {
	case map[string]any:
		for k, child := range v {
			p := childPath(base, k, child)
			collectRedacted(child, p, in || pathRedacted(p, redact), redact, depth+1, out)
		}
	case []any:
		for _, child := range v {
			collectRedacted(child, base, in, redact, depth+1, out)
		}
	case string:
		if in && len(strings.TrimSpace(v)) >= minScrubLen {
			*out = append(*out, v)
		}
	case json.Number:
		if in && len(v) >= minScrubLen {
			*out = append(*out, string(v))
		}
	}
}

// scrubText replaces each of vals (longest first) in s, as it is and as a JSON string
// escapes it, with redactedText; a value's beginning just before a final "…" too.
func scrubText(s string, vals []string) string {
	if s == "" {
		return s
	}
	for _, v := range vals {
		for _, form := range textForms(v) {
			s = strings.ReplaceAll(s, form, redactedText)
		}
	}
	if head, ok := strings.CutSuffix(s, "…"); ok {
		for _, v := range vals {
			for _, form := range textForms(v) {
				for n := len(form) - 1; n >= minScrubLen; n-- {
					if strings.HasSuffix(head, form[:n]) {
						return head[:len(head)-n] + redactedText + "…"
					}
				}
			}
		}
	}
	return s
}

// textForms are the ways a value appears in a message: as it is, and inside a JSON string.
func textForms(v string) []string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) == nil {
		if esc := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(b.String(), "\n"), `"`), `"`); esc != v {
			return []string{v, esc}
		}
	}
	return []string{v}
}
