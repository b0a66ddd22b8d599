package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"

	"github.com/google/uuid"
)

// Bounds on what one run provisions, so a typo in a flag or a hostile input file cannot
// make the simulator allocate or send without limit.
const (
	maxUsers        = 100_000
	maxGroups       = 10_000
	maxChanges      = 100_000
	maxInputBytes   = 64 << 20
	maxMembersGen   = 40 // members of one generated group: 0..maxMembersGen
	maxMembersInput = 50_000
	maxFieldLen     = 1024
)

// User is one source user, as Entra would read it from the tenant. Manager names another
// user by userName; it is linked in the reference pass after every user exists.
type User struct {
	UserName       string `json:"userName"`
	ExternalID     string `json:"externalId,omitempty"`
	GivenName      string `json:"givenName,omitempty"`
	FamilyName     string `json:"familyName,omitempty"`
	DisplayName    string `json:"displayName,omitempty"`
	Email          string `json:"email,omitempty"`
	Title          string `json:"title,omitempty"`
	Department     string `json:"department,omitempty"`
	EmployeeNumber string `json:"employeeNumber,omitempty"`
	Manager        string `json:"manager,omitempty"`
	// Active defaults to true when absent; a user that is false is created disabled.
	Active *bool `json:"active,omitempty"`
}

// IsActive reports the user's active flag, true unless set to false.
func (u *User) IsActive() bool { return u.Active == nil || *u.Active }

// Group is one source group. Members name users by userName; MemberGroups name nested
// groups by displayName (Entra sends a nested group as a single member with the group's id).
type Group struct {
	DisplayName  string   `json:"displayName"`
	ExternalID   string   `json:"externalId,omitempty"`
	Members      []string `json:"members,omitempty"`
	MemberGroups []string `json:"memberGroups,omitempty"`
}

// Dataset is the source tenant: the -input file's format, and what -seed generates.
type Dataset struct {
	Users  []User  `json:"users"`
	Groups []Group `json:"groups"`
}

// loadDataset reads and validates an -input file.
func loadDataset(path string) (*Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening the input: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxInputBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > maxInputBytes {
		return nil, fmt.Errorf("reading %s: larger than %d bytes", path, maxInputBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var ds Dataset
	if err := dec.Decode(&ds); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", path, err)
	}
	if err := ds.validate(); err != nil {
		return nil, fmt.Errorf("validating %s: %w", path, err)
	}
	return &ds, nil
}

// validate checks what Entra guarantees about its own source: unique matching
// attributes (userName, group displayName, case-insensitively), and references that name
// objects of the same input.
func (ds *Dataset) validate() error {
	if len(ds.Users) > maxUsers || len(ds.Groups) > maxGroups {
		return fmt.Errorf("at most %d users and %d groups", maxUsers, maxGroups)
	}
	users := make(map[string]bool, len(ds.Users))
	for i := range ds.Users {
		u := &ds.Users[i]
		if err := checkField(u.UserName, true); err != nil {
			return fmt.Errorf("user %d: userName: %w", i, err)
		}
		for _, s := range []string{u.ExternalID, u.GivenName, u.FamilyName, u.DisplayName, u.Email, u.Title, u.Department, u.EmployeeNumber, u.Manager} {
			if err := checkField(s, false); err != nil {
				return fmt.Errorf("user %q: %w", u.UserName, err)
			}
		}
		k := strings.ToLower(u.UserName)
		if users[k] {
			return fmt.Errorf("user %q appears twice (userName is the matching attribute)", u.UserName)
		}
		users[k] = true
	}
	for _, u := range ds.Users {
		if u.Manager == "" {
			continue
		}
		if !users[strings.ToLower(u.Manager)] {
			return fmt.Errorf("user %q: manager %q is not a user of the input", u.UserName, u.Manager)
		}
		if strings.EqualFold(u.Manager, u.UserName) {
			return fmt.Errorf("user %q is its own manager", u.UserName)
		}
	}
	return ds.validateGroups(users)
}

func (ds *Dataset) validateGroups(users map[string]bool) error {
	groups := make(map[string]bool, len(ds.Groups))
	for i, g := range ds.Groups {
		if err := checkField(g.DisplayName, true); err != nil {
			return fmt.Errorf("group %d: displayName: %w", i, err)
		}
		if err := checkField(g.ExternalID, false); err != nil {
			return fmt.Errorf("group %q: %w", g.DisplayName, err)
		}
		k := strings.ToLower(g.DisplayName)
		if groups[k] {
			return fmt.Errorf("group %q appears twice (displayName is the matching attribute)", g.DisplayName)
		}
		groups[k] = true
		if len(g.Members)+len(g.MemberGroups) > maxMembersInput {
			return fmt.Errorf("group %q: more than %d members", g.DisplayName, maxMembersInput)
		}
	}
	for _, g := range ds.Groups {
		for _, m := range g.Members {
			if !users[strings.ToLower(m)] {
				return fmt.Errorf("group %q: member %q is not a user of the input", g.DisplayName, m)
			}
		}
		for _, m := range g.MemberGroups {
			if !groups[strings.ToLower(m)] || strings.EqualFold(m, g.DisplayName) {
				return fmt.Errorf("group %q: member group %q is not another group of the input", g.DisplayName, m)
			}
		}
	}
	return nil
}

func checkField(s string, required bool) error {
	switch {
	case required && strings.TrimSpace(s) == "":
		return errors.New("required")
	case len(s) > maxFieldLen:
		return fmt.Errorf("longer than %d bytes", maxFieldLen)
	}
	return nil
}

// Word lists for generated users; small on purpose, the index keeps names unique.
var (
	givenNames  = []string{"Ada", "Alan", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "Edsger", "Radia", "Tim", "Hedy", "Donald", "Katherine", "John"}
	familyNames = []string{"Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson", "Allen", "Dijkstra", "Perlman", "Berners-Lee", "Lamarr", "Knuth", "Johnson", "Backus"}
	departments = []string{"Engineering", "Sales", "Marketing", "Finance", "Legal", "Support", "Operations", "Research"}
	titles      = []string{"Engineer", "Senior Engineer", "Manager", "Director", "Analyst", "Consultant", "Specialist", "Architect"}
	groupNouns  = []string{"Team", "Guild", "Committee", "Project", "Council", "Chapter"}
)

// newRand returns the generator for one purpose (stream) of a seed, so adding draws to
// one purpose does not shift what another generates.
func newRand(seed int64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), stream))
}

// guid returns a version-4 UUID drawn from r: deterministic for a seed.
func guid(r *rand.Rand) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return uuid.UUID(b).String()
}

// generate builds a source tenant of n users and m groups, the same for the same seed:
// managers are earlier users (so the hierarchy has no cycles), about one user in twenty
// starts disabled, groups have 0..maxMembersGen users and one group in five nests an
// earlier group.
func generate(seed int64, n, m int) *Dataset {
	r := newRand(seed, 1)
	ds := &Dataset{Users: make([]User, n), Groups: make([]Group, m)}
	for i := range n {
		given := givenNames[r.IntN(len(givenNames))]
		family := familyNames[r.IntN(len(familyNames))]
		local := fmt.Sprintf("%s.%s.%d", strings.ToLower(given), strings.ToLower(family), i)
		u := User{
			UserName:       local + "@contoso.example",
			ExternalID:     guid(r),
			GivenName:      given,
			FamilyName:     family,
			DisplayName:    given + " " + family,
			Email:          local + "@mail.contoso.example",
			Title:          titles[r.IntN(len(titles))],
			Department:     departments[r.IntN(len(departments))],
			EmployeeNumber: fmt.Sprintf("E%06d", i),
		}
		if i > 0 && r.IntN(5) != 0 {
			u.Manager = ds.Users[r.IntN(i)].UserName
		}
		if r.IntN(20) == 0 {
			u.Active = new(bool)
		}
		ds.Users[i] = u
	}
	for j := range m {
		g := Group{
			DisplayName: fmt.Sprintf("%s %s %d", departments[r.IntN(len(departments))], groupNouns[r.IntN(len(groupNouns))], j),
			ExternalID:  guid(r),
			Members:     pickUsers(r, ds.Users, r.IntN(min(n, maxMembersGen)+1)),
		}
		if j > 0 && r.IntN(5) == 0 {
			g.MemberGroups = []string{ds.Groups[r.IntN(j)].DisplayName}
		}
		ds.Groups[j] = g
	}
	return ds
}

// pickUsers draws k distinct users' userNames; k is at most maxMembersGen, so the
// rejection loop is bounded by a small multiple of k.
func pickUsers(r *rand.Rand, users []User, k int) []string {
	seen := make(map[int]bool, k)
	out := make([]string, 0, k)
	for tries := 0; len(out) < k && tries < 20*k+20; tries++ {
		i := r.IntN(len(users))
		if seen[i] {
			continue
		}
		seen[i] = true
		out = append(out, users[i].UserName)
	}
	return out
}
