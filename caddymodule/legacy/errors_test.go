package legacy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

func TestExtractMessage(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"nested error.message", `{"error":{"message":"email taken","code":7}}`, "email taken"},
		{"message", `{"message":"Invalid login"}`, "Invalid login"},
		{"error string", `{"error":"not_allowed"}`, "not_allowed"},
		{"oauth description wins over code", `{"error":"invalid_request","error_description":"missing name"}`, "missing name"},
		{"detail", `{"title":"Bad","detail":"name too long"}`, "name too long"},
		{"errors array", `{"errors":[{"message":"first"},{"message":"second"}]}`, "first"},
		{"errors strings", `{"errors":["a is required"]}`, "a is required"},
		{"unknown shape is compact JSON", "{\n  \"email\": [\"has already been taken\"]\n}", `{"email":["has already been taken"]}`},
		{"empty message skipped", `{"message":"","detail":"the real one"}`, "the real one"},
		{"plain text", "User already exists\n", "User already exists"},
		{"html page dropped", "<html><body>502 Bad Gateway</body></html>", ""},
		{"empty", "  ", ""},
		{"control characters", "{\"message\":\"line1\\nline2\\u0000\\u001b[31m\"}", "line1 line2 [31m"},
		{"invalid utf8", "bad \xff byte", "bad \uFFFD byte"},
		{"number is not a message", `{"message":42}`, `{"message":42}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := extractMessage([]byte(tt.body)); got != tt.want {
				t.Errorf("extractMessage(%q) = %q, want %q", tt.body, got, tt.want)
			}
		})
	}
}

func TestExtractMessageBounded(t *testing.T) {
	for _, body := range []string{
		`{"message":"` + strings.Repeat("é", 5000) + `"}`,
		strings.Repeat("word ", 5000),
		`{"a":"` + strings.Repeat("x", 5000) + `"}`,
		strings.Repeat("[", 100000),
	} {
		got := extractMessage([]byte(body))
		if n := utf8.RuneCountInString(got); n > maxMessageRunes+1 {
			t.Errorf("message has %d runes, want at most %d", n, maxMessageRunes+1)
		}
		if !utf8.ValidString(got) {
			t.Errorf("message is not valid UTF-8")
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{" 7 ", 7 * time.Second, true},
		{"99999999999999999999", maxRetryAfterHeader, true},
		{"86400", 24 * time.Hour, true},
		{"86401", maxRetryAfterHeader, true},
		{"9999999999", maxRetryAfterHeader, true},
		{"-5", 0, false},
		{"1.5", 0, false},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"soon", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		e    *Error
		want string
	}{
		{&Error{Kind: KindStatus, Status: 409, Message: "duplicate", Attempts: 1}, "legacy backend: status (HTTP 409): duplicate"},
		{&Error{Kind: KindTimeout, Attempts: 3, Err: errors.New("i/o timeout")}, "legacy backend: timeout after 3 attempts: i/o timeout"},
		{&Error{Kind: KindCircuitOpen}, "legacy backend: circuit_open"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestErrorCause(t *testing.T) {
	tests := []struct {
		e    *Error
		want string
	}{
		{&Error{Kind: KindRefused, Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}, "refused: connection refused"},
		{&Error{Kind: KindRefused, Err: io.ErrUnexpectedEOF}, "refused: connection closed before the answer"},
		{&Error{Kind: KindTimeout, Err: context.DeadlineExceeded}, "timeout: no answer in time"},
		{&Error{Kind: KindStatus, Status: 503, Message: "down"}, "status (HTTP 503)"},
		{&Error{Kind: KindUnproven, Status: 200, Err: errors.New("text/html (12 bytes), an HTML page")}, "unproven (HTTP 200): text/html (12 bytes), an HTML page"},
		{&Error{Kind: KindCircuitOpen, Err: errors.New("the last failure before the pause: refused: connection refused")}, "circuit_open: the last failure before the pause: refused: connection refused"},
	}
	for _, tt := range tests {
		if got := tt.e.Cause(); got != tt.want {
			t.Errorf("Cause() = %q, want %q", got, tt.want)
		}
		if strings.Contains(tt.e.Cause(), "127.0.0.1") {
			t.Errorf("Cause() names an address: %q", tt.e.Cause())
		}
	}
}

// TestCircuitNamesItsCause: a request refused by an open circuit says what opened it.
func TestCircuitNamesItsCause(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	c := newTestClient(t, closed, Options{CircuitFailures: 2, CircuitCooldown: time.Hour, MaxRetries: -1})
	for range 2 {
		_, _ = c.Do(context.Background(), Request{Path: "/a"})
	}
	_, err = c.Do(context.Background(), Request{Path: "/a"})
	e := asError(t, err)
	if e.Kind != KindCircuitOpen || !strings.Contains(e.Cause(), "the last failure before the pause: refused: connection refused") {
		t.Fatalf("cause %q", e.Cause())
	}
}
