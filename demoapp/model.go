package demoapp

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Field length bounds, in bytes.
const (
	maxFieldLen       = 256
	maxDescriptionLen = 1024
)

// Account is a user of the demo app as it is sent and stored. Its shape is deliberately
// unlike SCIM's User: an integer id, login instead of userName, names under person, mail
// and phone under contact, the enterprise attributes under org, and locked (changed only
// through the lock and unlock endpoints) instead of active. Empty strings mean "not set";
// every field is always present in responses so that a mapping can rely on the shape.
type Account struct {
	ID        int64   `json:"id"`
	Login     string  `json:"login"`
	Person    Person  `json:"person"`
	Contact   Contact `json:"contact"`
	Org       Org     `json:"org"`
	Locked    bool    `json:"locked"`
	CreatedAt string  `json:"created_at"`
	UpdatedAt string  `json:"updated_at"`
}

// Person holds an account's names.
type Person struct {
	First   string `json:"first"`
	Last    string `json:"last"`
	Display string `json:"display"`
}

// Contact holds an account's contact details.
type Contact struct {
	Mail  string `json:"mail"`
	Phone string `json:"phone"`
}

// Org holds an account's place in the organisation. ManagerID is the id of another account
// or null; the pointer is replaced, never written through, so copies of an Account may
// share it.
type Org struct {
	Dept       string `json:"dept"`
	Title      string `json:"title"`
	EmployeeNo string `json:"employee_no"`
	ManagerID  *int64 `json:"manager_id"`
}

// accountFields are the fields of an account a client may write with POST, PUT and PATCH.
type accountFields struct {
	Login   string  `json:"login"`
	Person  Person  `json:"person"`
	Contact Contact `json:"contact"`
	Org     Org     `json:"org"`
}

// accountCreate is the body of POST /api/v1/accounts: the writable fields plus an initial
// lock state, so that an account can be created locked in one call.
type accountCreate struct {
	accountFields
	Locked bool `json:"locked"`
}

// Team is a group of accounts. Members are not inlined: they are a sub-resource.
type Team struct {
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	MemberCount int    `json:"member_count"`
	CreatedAt   string `json:"created_at"`
	UpdatedAt   string `json:"updated_at"`
}

// teamFields are the fields of a team a client may write.
type teamFields struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// Member is one entry of GET /api/v1/teams/{id}/members.
type Member struct {
	AccountID int64  `json:"account_id"`
	Login     string `json:"login"`
}

// Membership is one (team, account) pair of the state dump.
type Membership struct {
	TeamID    int64 `json:"team_id"`
	AccountID int64 `json:"account_id"`
}

// Snapshot is the body of GET /api/v1/_state: everything the app holds, sorted by id (and
// memberships by team id, then account id), so that two snapshots of the same state are
// byte-for-byte equal apart from timestamps.
type Snapshot struct {
	Accounts    []Account    `json:"accounts"`
	Teams       []Team       `json:"teams"`
	Memberships []Membership `json:"memberships"`
	// Calls counts the API calls the app answered (any status, _state and _reset
	// excluded) since it started or was last reset.
	Calls int64 `json:"calls"`
}

// Page is the body of every list endpoint. NextCursor is null on the last page.
type Page[T any] struct {
	Items      []T     `json:"items"`
	NextCursor *string `json:"next_cursor"`
}

// validate checks the writable fields of an account. Manager references are checked by the
// state, which knows which accounts exist.
func (f *accountFields) validate() *apiError {
	if f.Login == "" {
		return invalid("login is required")
	}
	if err := checkText("login", f.Login, maxFieldLen); err != nil {
		return err
	}
	if strings.IndexFunc(f.Login, unicode.IsSpace) >= 0 {
		return invalid("login must not contain white space")
	}
	texts := []struct{ name, value string }{
		{"person.first", f.Person.First},
		{"person.last", f.Person.Last},
		{"person.display", f.Person.Display},
		{"contact.mail", f.Contact.Mail},
		{"contact.phone", f.Contact.Phone},
		{"org.dept", f.Org.Dept},
		{"org.title", f.Org.Title},
		{"org.employee_no", f.Org.EmployeeNo},
	}
	for _, t := range texts {
		if err := checkText(t.name, t.value, maxFieldLen); err != nil {
			return err
		}
	}
	if m := f.Contact.Mail; m != "" && !plausibleMail(m) {
		return invalid("contact.mail %q is not an e-mail address", m)
	}
	if id := f.Org.ManagerID; id != nil && *id <= 0 {
		return invalid("org.manager_id must be a positive account id or null")
	}
	return nil
}

// validate checks the writable fields of a team.
func (f *teamFields) validate() *apiError {
	if strings.TrimSpace(f.Name) == "" {
		return invalid("name is required")
	}
	if err := checkText("name", f.Name, maxFieldLen); err != nil {
		return err
	}
	return checkText("description", f.Description, maxDescriptionLen)
}

// checkText bounds a string field and rejects control characters, which a legacy app
// typically cannot store or display.
func checkText(name, v string, max int) *apiError {
	if len(v) > max {
		return invalid("%s is longer than %d bytes", name, max)
	}
	if !utf8.ValidString(v) {
		return invalid("%s is not valid UTF-8", name)
	}
	if strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return invalid("%s contains a control character", name)
	}
	return nil
}

// plausibleMail accepts local@domain with no white space: the check a typical legacy form
// does, not RFC 5322.
func plausibleMail(m string) bool {
	local, domain, ok := strings.Cut(m, "@")
	return ok && local != "" && domain != "" && !strings.Contains(domain, "@") &&
		strings.IndexFunc(m, unicode.IsSpace) < 0
}

// foldKey is the case-insensitive key of a login or team name in the uniqueness indexes.
func foldKey(s string) string { return strings.ToLower(s) }
