package scim

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const (
	fltEnterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	fltCustom     = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"
)

// AST builders keep the tables readable.

// fltA builds an AttrPath from "name" or "name.sub".
func fltA(s string) AttrPath {
	name, sub, _ := strings.Cut(s, ".")
	return AttrPath{Name: name, Sub: sub}
}

func fltCmp(attr string, op string, v any) *CompareFilter {
	return &CompareFilter{Attr: fltA(attr), Op: op, Value: v}
}

func fltURN(urn, attr, op string, v any) *CompareFilter {
	a := fltA(attr)
	a.URN = urn
	return &CompareFilter{Attr: a, Op: op, Value: v}
}

func fltAnd(l, r Filter) Filter          { return &AndFilter{Left: l, Right: r} }
func fltOr(l, r Filter) Filter           { return &OrFilter{Left: l, Right: r} }
func fltNot(f Filter) Filter             { return &NotFilter{Inner: f} }
func fltVP(attr string, f Filter) Filter { return &ValuePathFilter{Attr: fltA(attr), Inner: f} }
func fltNum(s string) json.Number        { return json.Number(s) }
func fltPr(attr string) *CompareFilter   { return fltCmp(attr, OpPr, nil) }
func fltEq(attr string, v any) Filter    { return fltCmp(attr, OpEq, v) }
func fltRepeat(s string, n int) string   { return strings.Repeat(s, n) }
func fltWrap(open, body, close string, n int) string {
	return strings.Repeat(open, n) + body + strings.Repeat(close, n)
}

// fltRequireError asserts err is a *Error 400 of scimType whose detail contains want.
func fltRequireError(t testing.TB, err error, scimType, want string) {
	t.Helper()
	se, ok := err.(*Error)
	if !ok {
		t.Fatalf("error %v (%T) is not a *scim.Error", err, err)
	}
	if se.Status != http.StatusBadRequest || se.ScimType != scimType {
		t.Fatalf("error %d %s, want 400 %s (%s)", se.Status, se.ScimType, scimType, se.Detail)
	}
	if !strings.Contains(se.Detail, want) {
		t.Fatalf("detail %q does not contain %q", se.Detail, want)
	}
}

// fltParseCases are the valid filters with their trees; the fuzz tests use them as seeds.
var fltParseCases = []struct {
	in   string
	want Filter
}{
	// What Entra sends.
	{`userName eq "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee"`, fltEq("userName", "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee")},
	{`externalId eq jyoung`, fltEq("externalId", "jyoung")},
	{`externalId eq "johnwong"`, fltEq("externalId", "johnwong")},
	{`id eq 54D382A4-2050-4C03-94D1-E769F1D15682 and manager eq 2819c223-7f76-453a-919d-413861904646`,
		fltAnd(fltEq("id", "54D382A4-2050-4C03-94D1-E769F1D15682"), fltEq("manager", "2819c223-7f76-453a-919d-413861904646"))},
	{`displayName eq "displayName"`, fltEq("displayName", "displayName")},
	{`emails[type eq "work"].value eq "user@contoso.com"`,
		fltVP("emails", fltAnd(fltEq("type", "work"), fltEq("value", "user@contoso.com")))},
	{`members[value eq "7f4bc1a3-285e-48ae-8202-5accb43efb0e"]`, fltVP("members", fltEq("value", "7f4bc1a3-285e-48ae-8202-5accb43efb0e"))},

	// Every operator.
	{`title ne "x"`, fltCmp("title", OpNe, "x")},
	{`title co "x"`, fltCmp("title", OpCo, "x")},
	{`title sw "x"`, fltCmp("title", OpSw, "x")},
	{`title ew "x"`, fltCmp("title", OpEw, "x")},
	{`title pr`, fltPr("title")},
	{`meta.lastModified gt "2011-05-13T04:42:34Z"`, fltCmp("meta.lastModified", OpGt, "2011-05-13T04:42:34Z")},
	{`meta.lastModified ge "2011-05-13T04:42:34Z"`, fltCmp("meta.lastModified", OpGe, "2011-05-13T04:42:34Z")},
	{`level lt 10`, fltCmp("level", OpLt, fltNum("10"))},
	{`level le -1.5e3`, fltCmp("level", OpLe, fltNum("-1.5e3"))},

	// Precedence, parentheses and not.
	{`a eq 1 or b eq 2 and c eq 3`, fltOr(fltEq("a", fltNum("1")), fltAnd(fltEq("b", fltNum("2")), fltEq("c", fltNum("3"))))},
	{`a eq 1 and b eq 2 or c eq 3`, fltOr(fltAnd(fltEq("a", fltNum("1")), fltEq("b", fltNum("2"))), fltEq("c", fltNum("3")))},
	{`a pr and b pr and c pr`, fltAnd(fltAnd(fltPr("a"), fltPr("b")), fltPr("c"))},
	{`a pr or b pr or c pr`, fltOr(fltOr(fltPr("a"), fltPr("b")), fltPr("c"))},
	{`(a eq 1 or b eq 2) and c eq 3`, fltAnd(fltOr(fltEq("a", fltNum("1")), fltEq("b", fltNum("2"))), fltEq("c", fltNum("3")))},
	{`a pr and (b pr or (c pr and (d pr)))`, fltAnd(fltPr("a"), fltOr(fltPr("b"), fltAnd(fltPr("c"), fltPr("d"))))},
	{`((a pr))`, fltPr("a")},
	{`not (a pr)`, fltNot(fltPr("a"))},
	{`not(a pr) and not  (b pr)`, fltAnd(fltNot(fltPr("a")), fltNot(fltPr("b")))},
	{`not (not (a pr or b pr))`, fltNot(fltNot(fltOr(fltPr("a"), fltPr("b"))))},
	{`a pr and(b pr)`, fltAnd(fltPr("a"), fltPr("b"))},
	{`not pr`, fltPr("not")}, // an attribute called "not"
	{`NOT eq "x"`, fltEq("NOT", "x")},

	// Case: keywords, operators and names; names keep their spelling.
	{`userName EQ "x"`, fltEq("userName", "x")},
	{`USERNAME eq "x"`, fltEq("USERNAME", "x")},
	{`a Pr AND b PR Or c pR`, fltOr(fltAnd(fltPr("a"), fltPr("b")), fltPr("c"))},
	{`Not (a pr)`, fltNot(fltPr("a"))},
	{`NOT(a pr)`, fltNot(fltPr("a"))},

	// Schema URNs and sub-attributes.
	{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager eq "x"`, fltURN(fltEnterprise, "manager", OpEq, "x")},
	{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "x"`, fltURN(fltEnterprise, "manager.value", OpEq, "x")},
	{`urn:ietf:params:scim:schemas:core:2.0:User:name.familyName co "O'Malley"`, fltURN(UserSchema, "name.familyName", OpCo, "O'Malley")},
	{`URN:IETF:params:scim:schemas:extension:enterprise:2.0:User:department eq Retail`, fltURN("URN:IETF:params:scim:schemas:extension:enterprise:2.0:User", "department", OpEq, "Retail")},
	{`urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User:tag eq "Blue"`, fltURN(fltCustom, "tag", OpEq, "Blue")},
	// The pre-2018 Entra dot notation of a known schema.
	{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User.department eq "Retail"`, fltURN(fltEnterprise, "department", OpEq, "Retail")},
	{`name.familyName eq "x"`, fltEq("name.familyName", "x")},
	{`emails.value eq "x"`, fltEq("emails.value", "x")},
	{`members.$ref pr`, fltPr("members.$ref")},

	// Values.
	{`active eq true`, fltEq("active", true)},
	{`active eq FALSE`, fltEq("active", false)},
	{`active eq True`, fltEq("active", true)},
	{`manager eq null`, fltEq("manager", nil)},
	{`manager eq NULL`, fltEq("manager", nil)},
	{`title eq "true"`, fltEq("title", "true")},
	{`title eq "null"`, fltEq("title", "null")},
	{`level eq 0`, fltEq("level", fltNum("0"))},
	{`externalId eq 0123`, fltEq("externalId", "0123")},
	{`externalId eq 1.`, fltEq("externalId", "1.")},
	{`externalId eq 12e`, fltEq("externalId", "12e")},
	{`externalId eq -`, fltEq("externalId", "-")},
	{`externalId eq trueish`, fltEq("externalId", "trueish")},
	{`externalId eq a"b(c[d`, fltEq("externalId", `a"b(c[d`)},
	{`title eq "a \"quoted\" b"`, fltEq("title", `a "quoted" b`)},
	{`title eq "\\ \/ \b\f\n\r\t \u00e9 \ud83d\ude00 \ud83d"`, fltEq("title", "\\ / \b\f\n\r\t é 😀 \uFFFD")},
	{`title eq "Zoë – 東京"`, fltEq("title", "Zoë – 東京")},
	{`title eq ""`, fltEq("title", "")},
	{`userName eq"x"`, fltEq("userName", "x")},
	{`(externalId eq jyoung)`, fltEq("externalId", "jyoung")},
	{`emails[type eq work]`, fltVP("emails", fltEq("type", "work"))},
	{`emails[type eq work].value eq x@y`, fltVP("emails", fltAnd(fltEq("type", "work"), fltEq("value", "x@y")))},

	// Whitespace.
	{"  \tuserName \t eq\t\t\"x\"  ", fltEq("userName", "x")},
	{"a pr\tand\tb pr", fltAnd(fltPr("a"), fltPr("b"))},
	{"( a pr )", fltPr("a")},

	// Value paths with logic inside, RFC 7644 §3.4.2.2 examples.
	{`emails[type eq "work" and (value co "@contoso.com" or not (primary eq false))]`,
		fltVP("emails", fltAnd(fltEq("type", "work"), fltOr(fltCmp("value", OpCo, "@contoso.com"), fltNot(fltEq("primary", false)))))},
	{`emails[type eq "work" or type eq "home"].value eq "x"`,
		fltVP("emails", fltAnd(fltOr(fltEq("type", "work"), fltEq("type", "home")), fltEq("value", "x")))},
	{`title pr and userType eq "Employee"`, fltAnd(fltPr("title"), fltEq("userType", "Employee"))},
	{`userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")`,
		fltAnd(fltEq("userType", "Employee"), fltOr(fltCmp("emails", OpCo, "example.com"), fltCmp("emails.value", OpCo, "example.org")))},
	{`userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")`,
		fltAnd(fltCmp("userType", OpNe, "Employee"), fltNot(fltOr(fltCmp("emails", OpCo, "example.com"), fltCmp("emails.value", OpCo, "example.org"))))},
	{`emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]`,
		fltOr(fltVP("emails", fltAnd(fltEq("type", "work"), fltCmp("value", OpCo, "@example.com"))),
			fltVP("ims", fltAnd(fltEq("type", "xmpp"), fltCmp("value", OpCo, "@foo.com"))))},
	{`not (emails[type eq "work"]) and userName sw "J"`, fltAnd(fltNot(fltVP("emails", fltEq("type", "work"))), fltCmp("userName", OpSw, "J"))},
}

func TestParseFilter(t *testing.T) {
	for _, tc := range fltParseCases {
		got, err := ParseFilter(tc.in)
		if err != nil {
			t.Errorf("ParseFilter(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseFilter(%q)\n got %s\nwant %s", tc.in, fltFormat(got), fltFormat(tc.want))
		}
	}
}

// fltErrorCases are invalid filters with a substring their detail must contain.
var fltErrorCases = []struct{ in, want string }{
	{``, "invalid filter: it is empty"},
	{" \t ", "invalid filter: it is empty"},
	{"userName eq \"\xff\"", "not valid UTF-8"},
	{`userName eq "abc`, `invalid filter at position 13: unterminated string`},
	{`userName eq "abc\"`, "unterminated string"},
	{`userName eq "abc\`, "lone backslash"},
	{`userName`, `invalid filter at position 9: expected a comparison operator (eq, ne, co, sw, ew, pr, gt, ge, lt, le) after "userName"`},
	{`displayName eq "a" and userName`, `invalid filter at position 32: expected a comparison operator (eq, ne, co, sw, ew, pr, gt, ge, lt, le) after "userName", found the end of the filter`},
	{`userName  "x"`, `expected a comparison operator`},
	{`userName+eq+"x"`, `expected a comparison operator (eq, ne, co, sw, ew, pr, gt, ge, lt, le) after "userName", found "+eq+\"x\""`},
	{`userName eq`, `expected a value after "userName eq"`},
	{`userName eq `, `expected a value after "userName eq"`},
	{`(userName eq )`, `expected a value after "userName eq"`},
	{`userName eqq "x"`, `at position 10: unknown comparison operator "eqq" after "userName"; use one of eq, ne, co, sw, ew, pr, gt, ge, lt, le`},
	{`userName equals "x"`, `unknown comparison operator "equals"`},
	{`userName and "x"`, `unknown comparison operator "and"`},
	{`userName pr "x"`, `expected "and", "or" or the end of the filter, found "\"x\""`},
	{`userName eq "x" foo`, `at position 17: expected "and", "or" or the end of the filter, found "foo"`},
	{`userName eq "x" andy eq 1`, `found "andy"`},
	{`userName eq "x"y`, `right after the closing quote`},
	{`userName eq "x" and`, `at position 20: "and" must be followed by another comparison, found the end of the filter`},
	{`(userName eq "x" OR)`, `at position 20: "OR" must be followed by another comparison, found ")"`},
	{`emails[type eq "work" and]`, `"and" must be followed by another comparison, found "]"`},
	{`userName eq "x" andy`, `expected "and", "or" or the end of the filter, found "andy"`},
	{`not userName eq "x"`, `at position 5: "not" takes a filter in parentheses, found "userName"`},
	{`not not (a pr)`, `"not" takes a filter in parentheses, found "not"`},
	{`not`, `at position 4: "not" takes a filter in parentheses, found the end of the filter`},
	{`userName eq "x" and `, `expected an attribute name, "not" or "(" but the filter ends here`},
	{`userName eq "x" or or`, `expected a comparison operator`},
	{`(userName eq "x"`, `missing ")" to close the "(" at position 1`},
	{`((a pr) or b pr`, `missing ")" to close the "(" at position 1`},
	{`not (a pr`, `missing ")" to close the "(" at position 5`},
	{`(a pr]`, `expected "and", "or" or ")" to close the "(" at position 1, found "]"`},
	{`userName eq "x")`, `at position 16: unbalanced ")": no "(" is open`},
	{`()`, `expected an attribute name, "not" or "(", found ")"`},
	{`emails[type eq "work"`, `missing "]" to close the "[" at position 7`},
	{`emails[type eq "work")]`, `expected "and", "or" or "]" to close the "[" at position 7, found ")"`},
	{`emails[type eq "work"]]`, `unbalanced "]": no "[" is open`},
	{`emails[type eq "work" and addresses[type eq "x"]]`, `nested [...] filters are not allowed`},
	{`a[b[c eq 1]]`, `nested [...] filters are not allowed`},
	{`emails[type.x eq 1]`, `inside emails[...] name a sub-attribute of "emails"`},
	{`emails[urn:x:y:type eq 1]`, `inside emails[...] name a sub-attribute`},
	{`name.givenName[x eq 1]`, `a [...] filter must follow an attribute name, not the sub-attribute path "name.givenName"`},
	{`emails[type eq "work"] eq "x"`, `a value filter emails[...] cannot be compared itself; compare one of its sub-attributes, e.g. emails[...].value eq`},
	{`emails[type eq "work"].value`, `expected a comparison operator (eq, ne, co, sw, ew, pr, gt, ge, lt, le) after "emails[type eq \"work\"].value"`},
	{`emails[type eq "work"]. eq "x"`, `expected a sub-attribute name after "].", found`},
	{`emails[]`, `expected an attribute name, "not" or "(", found "]"`},
	{`"userName" eq "x"`, `expected an attribute name, "not" or "(", found "\"userName\""`},
	{`user:Name eq 1`, `"user:Name" contains ":" but does not start with a schema URN`},
	{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User eq "x"`, `names a schema, not an attribute`},
	{`urn:x:y: eq 1`, `is not a valid attribute name`},
	{`name.givenName.x eq 1`, `has more than one "."`},
	{`name. eq 1`, `does not end in a valid sub-attribute name`},
	{`1abc eq 2`, `"1abc" is not a valid attribute name`},
	{`-x eq 2`, `is not a valid attribute name`},
	{`userName eq "\x"`, `invalid escape "\\x" in a string`},
	{`userName eq "\u12"`, `\u needs four hex digits`},
	{`userName eq "\u12zz"`, `\u needs four hex digits`},
	{`* eq 1`, `expected an attribute name, found "*"`},
	{fltRepeat("a", MaxFilterLength+1), "it is 4097 bytes long; the limit is 4096 bytes"},
	{fltRepeat("(", 100000), "the limit is 4096 bytes"},
	{fltRepeat("not (", 50000), "the limit is 4096 bytes"},
	{fltWrap("(", "a pr", ")", MaxFilterDepth+1), `at position 17: the filter nests parentheses, "not" and [...] more than 16 levels deep`},
	{fltWrap("not (", "a pr", ")", MaxFilterDepth+1), "more than 16 levels deep"},
	{fltWrap("(", `emails[type eq "work"]`, ")", MaxFilterDepth), "more than 16 levels deep"},
	{fltRepeat("(", 1000), "more than 16 levels deep"},
	{fltRepeat("not (", 800), "more than 16 levels deep"},
	{fltRepeat("emails[", 500), "nested [...] filters are not allowed"},
	{"a pr" + fltRepeat(" or a pr", MaxFilterTerms), "the filter has more than 64 comparisons"},
	{`e[t eq 1].v eq 2` + fltRepeat(" and a pr", MaxFilterTerms-1), "the filter has more than 64 comparisons"},
}

func TestParseFilterErrors(t *testing.T) {
	for _, tc := range fltErrorCases {
		name := tc.in
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(name, func(t *testing.T) {
			f, err := ParseFilter(tc.in)
			if err == nil {
				t.Fatalf("ParseFilter(%q) = %s, want an error", tc.in, fltFormat(f))
			}
			fltRequireError(t, err, TypeInvalidFilter, tc.want)
		})
	}
}

// TestParseFilterLimits checks that the bounds admit filters exactly at the limit.
func TestParseFilterLimits(t *testing.T) {
	ok := []string{
		fltWrap("(", "a pr", ")", MaxFilterDepth),
		fltWrap("not (", "a pr", ")", MaxFilterDepth),
		fltWrap("(", `emails[type eq "work"]`, ")", MaxFilterDepth-1),
		"a pr" + fltRepeat(" or a pr", MaxFilterTerms-1),
		`userName eq "` + fltRepeat("x", MaxFilterLength-14) + `"`,
	}
	// The deepest tree the parser admits: a 64-term chain under 16 levels of not.
	ok = append(ok, fltWrap("not (", "a pr"+fltRepeat(" and a pr", MaxFilterTerms-1), ")", MaxFilterDepth))
	for _, in := range ok {
		f, err := ParseFilter(in)
		if err != nil {
			t.Errorf("ParseFilter(%.40q...) = %v, want success", in, err)
			continue
		}
		if _, err := Match(f, UserType, Resource{"a": "x"}); err != nil {
			t.Errorf("Match(%.40q...) = %v, want success", in, err)
		}
	}
}

// TestParseFilterFailsFast guards against super-linear work on hostile input: each
// input is at the length limit and must be rejected or parsed in well under a second
// even with the race detector.
func TestParseFilterFailsFast(t *testing.T) {
	inputs := []string{
		fltRepeat("(", MaxFilterLength),
		fltRepeat("not (", MaxFilterLength/5),
		fltRepeat("a pr and ", MaxFilterLength/9),
		fltRepeat(`"`, MaxFilterLength),
		fltRepeat(`\`, MaxFilterLength),
		`a eq "` + fltRepeat(`\u00e9`, (MaxFilterLength-10)/6) + `"`,
		fltRepeat("urn:", MaxFilterLength/4),
		fltRepeat("a.", MaxFilterLength/2),
		fltRepeat("x[", MaxFilterLength/2),
	}
	for _, in := range inputs {
		begin := time.Now()
		_, _ = ParseFilter(in)
		if d := time.Since(begin); d > time.Second {
			t.Errorf("ParseFilter(%.20q...) took %v", in, d)
		}
	}
}

func TestParsePath(t *testing.T) {
	cases := []struct {
		in   string
		want Path
	}{
		{`userName`, Path{Attr: fltA("userName")}},
		{`name.givenName`, Path{Attr: fltA("name.givenName")}},
		{`emails[type eq "work"].value`, Path{Attr: fltA("emails"), Filter: fltEq("type", "work"), Sub: "value"}},
		{`addresses[type eq "work"].formatted`, Path{Attr: fltA("addresses"), Filter: fltEq("type", "work"), Sub: "formatted"}},
		{`phoneNumbers[type eq "mobile"].value`, Path{Attr: fltA("phoneNumbers"), Filter: fltEq("type", "mobile"), Sub: "value"}},
		{`members[value eq "7f4bc1a3-285e-48ae-8202-5accb43efb0e"]`, Path{Attr: fltA("members"), Filter: fltEq("value", "7f4bc1a3-285e-48ae-8202-5accb43efb0e")}},
		{`manager[value eq "manager-id"]`, Path{Attr: fltA("manager"), Filter: fltEq("value", "manager-id")}},
		{`members`, Path{Attr: fltA("members")}},
		{`manager`, Path{Attr: fltA("manager")}},
		{`roles`, Path{Attr: fltA("roles")}},
		{`active`, Path{Attr: fltA("active")}},
		{`externalId`, Path{Attr: fltA("externalId")}},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager`, Path{Attr: AttrPath{URN: fltEnterprise, Name: "manager"}}},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`, Path{Attr: AttrPath{URN: fltEnterprise, Name: "department"}}},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber`, Path{Attr: AttrPath{URN: fltEnterprise, Name: "employeeNumber"}}},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`, Path{Attr: AttrPath{URN: fltEnterprise, Name: "manager", Sub: "value"}}},
		{`urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User:tag`, Path{Attr: AttrPath{URN: fltCustom, Name: "tag"}}},
		{`urn:ietf:params:scim:schemas:core:2.0:User:name.givenName`, Path{Attr: AttrPath{URN: UserSchema, Name: "name", Sub: "givenName"}}},
		{`emails[type eq "other"].Value`, Path{Attr: fltA("emails"), Filter: fltEq("type", "other"), Sub: "Value"}},
		{`EMAILS[TYPE EQ "Work"].VALUE`, Path{Attr: fltA("EMAILS"), Filter: fltEq("TYPE", "Work"), Sub: "VALUE"}},
		{`emails[type eq "work" and primary eq true].display`, Path{Attr: fltA("emails"), Filter: fltAnd(fltEq("type", "work"), fltEq("primary", true)), Sub: "display"}},
		{`emails[type eq work]`, Path{Attr: fltA("emails"), Filter: fltEq("type", "work")}},
		{` userName `, Path{Attr: fltA("userName")}},
	}
	for _, tc := range cases {
		got, err := ParsePath(tc.in)
		if err != nil {
			t.Errorf("ParsePath(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParsePath(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

var fltPathErrorCases = []struct{ in, want string }{
	{``, "invalid path: it is empty"},
	{`   `, "invalid path: it is empty"},
	{`[type eq "work"]`, `invalid path at position 1: expected an attribute name, found "["`},
	{`emails[`, `expected an attribute name, "not" or "(" but the path ends here`},
	{`emails[type eq "work"`, `missing "]" to close the "[" at position 7`},
	{`emails[type eq "work"]x`, `unexpected "x" after the path "emails[type eq \"work\"]"`},
	{`emails[type eq "work"].`, `expected a sub-attribute name after "].", found the end of the path`},
	{`emails[type eq "work"].value.x`, `unexpected ".x" after the path`},
	{`emails[type eq "work"][value eq "x"]`, `unexpected "[" after the path`},
	{`emails[type eq]`, `expected a value after "type eq"`},
	{`emails[type[value eq 1]]`, `nested [...] filters are not allowed`},
	{`name.givenName[type eq "x"]`, `a [...] filter must follow an attribute name`},
	{`user name`, `unexpected "name" after the path "user"`},
	{`userName eq "x"`, `unexpected "eq" after the path`},
	{`a..b`, `has more than one "."`},
	{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`, `names a schema, not an attribute`},
	{`no:urn`, `does not start with a schema URN`},
	{fltRepeat("a", MaxFilterLength+1), "the limit is 4096 bytes"},
	{"emails[" + fltWrap("(", "a pr", ")", MaxFilterDepth) + "]", "more than 16 levels deep"},
}

func TestParsePathErrors(t *testing.T) {
	for _, tc := range fltPathErrorCases {
		got, err := ParsePath(tc.in)
		if err == nil {
			t.Errorf("ParsePath(%q) = %+v, want an error", tc.in, got)
			continue
		}
		fltRequireError(t, err, TypeInvalidPath, tc.want)
	}
}

func TestParseAttrPath(t *testing.T) {
	cases := []struct {
		in   string
		want AttrPath
	}{
		{"userName", fltA("userName")},
		{"name.givenName", fltA("name.givenName")},
		{"emails.value", fltA("emails.value")},
		{"members", fltA("members")},
		{fltEnterprise + ":manager", AttrPath{URN: fltEnterprise, Name: "manager"}},
		{fltEnterprise + ":manager.value", AttrPath{URN: fltEnterprise, Name: "manager", Sub: "value"}},
		{fltEnterprise, AttrPath{URN: fltEnterprise}},
		{strings.ToUpper(fltEnterprise), AttrPath{URN: strings.ToUpper(fltEnterprise)}},
		{" meta.lastModified ", fltA("meta.lastModified")},
	}
	for _, tc := range cases {
		got, err := ParseAttrPath(tc.in)
		if err != nil {
			t.Errorf("ParseAttrPath(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseAttrPath(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	bad := []struct{ in, want string }{
		{"", "invalid attribute path: it is empty"},
		{`emails[type eq "work"]`, `unexpected "[" after the attribute name`},
		{"user name", `unexpected "name"`},
		{"a..b", `more than one "."`},
		{"a,b", `unexpected ",b"`},
	}
	for _, tc := range bad {
		_, err := ParseAttrPath(tc.in)
		if err == nil {
			t.Errorf("ParseAttrPath(%q) succeeded, want an error", tc.in)
			continue
		}
		fltRequireError(t, err, TypeInvalidPath, tc.want)
	}
}

// fltLoad reads a resource fixture from testdata/filter.
func fltLoad(t testing.TB, name string) Resource {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "filter", name))
	if err != nil {
		t.Fatal(err)
	}
	v, err := Decode(data)
	if err != nil {
		t.Fatalf("decoding %s: %v", name, err)
	}
	return v.(map[string]any)
}

var fltUserMatchCases = []struct {
	filter string
	want   bool
}{
	{`userName eq "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee"`, true},
	{`USERNAME Eq "test_user_00AA00AA-bb11-cc22-dd33-44ee44ee44ee"`, true},
	{`userName eq "7d420df3-9995-4831-a406-ecf8166f5f6a"`, false},
	{`userName eq Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee`, true},
	{`externalId eq 0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef`, true},
	{`externalId eq "0A21F0F2-8D2A-4F8E-BF98-7363C4AED4EF"`, false}, // caseExact
	{`id eq 2441309d-8532-4e77-93ae-0f0a7c1b2c3d and manager eq 2819c223-7f76-453a-919d-413861904646`, true},
	{`id eq 2441309D-8532-4E77-93AE-0F0A7C1B2C3D`, false}, // caseExact
	{`id eq 2441309d-8532-4e77-93ae-0f0a7c1b2c3d and manager eq 00000000-7f76-453a-919d-413861904646`, false},
	{`manager eq "2819C223-7F76-453A-919D-413861904646"`, true},
	{`manager[value eq "2819c223-7f76-453a-919d-413861904646"]`, true},
	{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager eq "2819c223-7f76-453a-919d-413861904646"`, true},
	{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "2819c223-7f76-453a-919d-413861904646"`, true},
	{`URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:DEPARTMENT eq "retail"`, true},
	{`department eq "Retail"`, true},
	{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User.department eq "Retail"`, true},
	{`urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User:tag eq "blue"`, true},
	{`urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User:level gt 5`, true},
	{`urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User:level eq 7.0`, true},
	{`urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User:level lt 7e0`, false},
	{`urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User:level eq "7"`, true},
	{`urn:ietf:params:scim:schemas:core:2.0:User:userName sw "test_user"`, true},
	{`urn:ietf:params:scim:schemas:core:2.0:User:name.givenName eq "GIVENNAME"`, true},
	{`urn:ietf:params:scim:schemas:core:2.0:User:id pr`, true},
	{`emails[type eq "work"].value eq "test_user_11bb11bb-cc22-dd33-ee44-55ff55ff55ff@TESTUSER.com"`, true},
	{`emails[type eq "other"].value eq "Test_User_11bb11bb-cc22-dd33-ee44-55ff55ff55ff@testuser.com"`, false},
	{`emails.value eq "adele@contoso.com"`, true},
	{`emails eq "ADELE@contoso.com"`, true},
	{`emails[type eq "work" and primary eq true]`, true},
	{`emails[type eq "work" and primary eq "True"]`, true},
	{`emails[type eq "other" and primary eq true]`, false},
	{`emails[not (type eq "work")]`, true},
	{`emails[value co "@contoso" or value ew "@nowhere"]`, true},
	{`emails.value co "@CONTOSO"`, true},
	{`emails.value sw "TEST_user"`, true},
	{`emails.value ew ".COM"`, true},
	{`emails.value co "@fabrikam"`, false},
	{`emails.value ne "adele@contoso.com"`, false}, // one element equals it
	{`emails.value ne "nobody@contoso.com"`, true},
	{`emails.primary eq true`, true},
	{`phoneNumbers[type eq "mobile"].value eq "10-040-1309"`, true},
	{`addresses[type eq "work"].formatted eq "18/2111"`, true},
	{`roles[primary eq true]`, true},
	{`roles[primary eq false]`, false},
	{`name.familyName eq "FAMILYNAME"`, true},
	{`name.familyName co "mily"`, true},
	{`active eq true`, true},
	{`active eq "TRUE"`, true},
	{`active eq false`, false},
	{`active ne false`, true},
	{`title pr`, true},
	{`nickName pr`, false},
	{`roles pr`, true},
	{`name pr`, true},
	{`name.middleName pr`, false},
	{`nickName eq null`, true},
	{`title eq null`, false},
	{`nickName ne null`, false},
	{`title ne null`, true},
	{`nickName ne "x"`, true},
	{`nickName eq "x"`, false},
	{`title gt "Q"`, true},
	{`title lt "s"`, true},
	{`title ge "RETAIL MANAGER"`, true},
	{`title le "retail manager"`, true},
	{`title gt "retail manager"`, false},
	{`meta.lastModified gt "2018-03-27T19:59:26Z"`, true},
	{`meta.lastModified gt "2018-03-28T08:00:00Z"`, false},
	{`meta.lastModified ge "2018-03-28T08:00:00Z"`, true},
	{`meta.lastModified eq "2018-03-28T10:00:00+02:00"`, true},
	{`meta.created lt "2018-03-27T20:59:26+01:00"`, false},
	{`meta.created le "2018-03-27T20:59:26+01:00"`, true},
	{`meta.created lt "2018-03-27T19:59:27"`, true},
	{`meta.resourceType eq "user"`, true},
	{`meta.version eq "w/\"3\""`, false}, // caseExact
	{`schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"`, true},
	{`not (userName eq "x")`, true},
	{`not (not (userName pr))`, true},
	{`userName eq "x" or displayName eq "adele vance"`, true},
	{`userName eq "x" and displayName eq "Adele Vance"`, false},
	{`(userName eq "x" or active eq true) and (title co "retail")`, true},
	{`userName eq 5`, false},
	{`unknownAttr eq "x"`, false},
	{`unknownAttr ne "x"`, true},
	{`unknownAttr gt "a"`, false}, // unknown attributes are untyped: no error, no match
	{`name.unknown eq "x"`, false},
}

var fltGroupMatchCases = []struct {
	filter string
	want   bool
}{
	{`displayName eq "sales emea"`, true},
	{`displayName eq "Sales"`, false},
	{`displayName sw "Sales"`, true},
	{`externalId eq 8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159`, true},
	{`members[value eq "7f4bc1a3-285e-48ae-8202-5accb43efb0e"]`, true},
	{`members[value eq "7f4bc1a3-285e-48ae-8202-5accb43efb0e" and type eq "user"]`, true},
	{`members[value eq "f648f8d5ea4e4cd38e9c" and type eq "User"]`, false},
	{`members.value eq "f648f8d5ea4e4cd38e9c"`, true},
	{`members eq "f648f8d5ea4e4cd38e9c"`, true},
	{`members[type eq "Group"]`, false},
	{`members pr`, true},
	{`manager eq "x"`, false}, // Groups have no enterprise extension
	{`meta.created ge "2024-01-02T03:04:05Z"`, true},
	{`meta.created gt "2024-01-02T03:04:05.000001Z"`, false},
}

func TestMatch(t *testing.T) {
	sets := []struct {
		typ, fixture string
		cases        []struct {
			filter string
			want   bool
		}
	}{
		{UserType, "user.json", fltUserMatchCases},
		{GroupType, "group.json", fltGroupMatchCases},
	}
	for _, set := range sets {
		r := fltLoad(t, set.fixture)
		for _, tc := range set.cases {
			f, err := ParseFilter(tc.filter)
			if err != nil {
				t.Errorf("ParseFilter(%q): %v", tc.filter, err)
				continue
			}
			got, err := Match(f, set.typ, r)
			if err != nil {
				t.Errorf("Match(%s, %q): %v", set.typ, tc.filter, err)
				continue
			}
			if got != tc.want {
				t.Errorf("Match(%s, %q) = %v, want %v", set.typ, tc.filter, got, tc.want)
			}
		}
	}
}

// TestMatchSubstringsFoldAsEq: co, sw and ew on a case-insensitive attribute equate
// exactly the letters eq does (strings.EqualFold's simple folding): the long "ſ" is "s",
// final "ς" is "Σ", the dotted "İ" is neither "i" nor "I", and "ß" is not "SS".
func TestMatchSubstringsFoldAsEq(t *testing.T) {
	for _, c := range []struct {
		stored, op, value string
		want              bool
	}{
		{"stefan", "sw", "ſt", true}, {"stefan", "eq", "ſtefan", true},
		{"ας", "co", "Σ", true}, {"ας", "ew", "ΑΣ", true}, {"ας", "eq", "ΑΣ", true},
		{"ΑΣ", "sw", "ας", true}, {"Kelvin", "sw", "\u212aE", true}, // the Kelvin sign is K
		{"i", "co", "İ", false}, {"İ", "co", "i", false}, {"İ", "eq", "i", false},
		{"xİy", "co", "İ", true}, {"STRASSE", "co", "ß", false}, {"straße", "co", "SS", false},
		{"Straße", "ew", "SSE", false}, {"Straße", "ew", "ẞe", true}, // U+1E9E folds to ß
		{"Ab\u00ff", "co", "B\u0178", true}, // ÿ and Ÿ
	} {
		f, err := ParseFilter(`userName ` + c.op + ` "` + c.value + `"`)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := ParseFilter(`x eq "` + c.stored + `"`) // decode the escapes alike
		if err != nil {
			t.Fatal(err)
		}
		got, err := Match(f, UserType, Resource{"userName": stored.(*CompareFilter).Value})
		if err != nil || got != c.want {
			t.Errorf("userName %s %q on %q: %v, %v; want %v", c.op, c.value, c.stored, got, err, c.want)
		}
	}
}

// TestMatchStringBooleans covers Entra's "True"/"False" strings stored for active.
func TestMatchStringBooleans(t *testing.T) {
	for _, stored := range []any{false, "False", "false", "FALSE"} {
		r := Resource{"active": stored}
		for filter, want := range map[string]bool{
			`active eq false`: true, `active eq "False"`: true, `active eq true`: false, `active ne true`: true,
		} {
			f, err := ParseFilter(filter)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := Match(f, UserType, r); err != nil || got != want {
				t.Errorf("active=%#v: Match(%q) = %v, %v; want %v", stored, filter, got, err, want)
			}
		}
	}
}

func TestMatchErrors(t *testing.T) {
	cases := []struct{ filter, want string }{
		{`active gt true`, "active cannot be ordered: booleans have no order"},
		{`active lt "x"`, "booleans have no order"},
		{`title gt true`, "booleans have no order"},
		{`unknownAttr ge false`, "unknownAttr cannot be ordered"},
		{`active co "t"`, "co compares strings; it cannot be used with the boolean active"},
		{`title sw false`, "cannot be used with the boolean"},
		{`active eq "yes"`, "active is a boolean; compare it with true or false"},
		{`emails[primary gt true]`, "emails[...].primary cannot be ordered"},
		{`name gt "a"`, "name is a complex attribute without a value; compare one of its sub-attributes, e.g. name.formatted"},
		{`name eq "x"`, "name is a complex attribute without a value"},
		{`manager gt "x"`, "manager is a complex attribute and cannot be ordered"},
		{`emails le "x"`, "emails is a complex attribute and cannot be ordered"},
		{`meta.lastModified gt "yesterday"`, `meta.lastModified is a dateTime; compare it with an RFC 3339 time`},
		{`meta.created lt 2018`, "is a dateTime"},
		{`userName gt null`, "userName: null can only be compared with eq or ne"},
		{`userName co null`, "null can only be compared with eq or ne"},
		{`userName.x eq 1`, "userName has no sub-attributes, so userName.x cannot be compared"},
		{`userName[value eq 1]`, "userName is not a complex attribute, so it cannot take a [...] filter"},
		{`not (id pr) or active gt false`, "booleans have no order"},
	}
	user := fltLoad(t, "user.json")
	for _, tc := range cases {
		f, err := ParseFilter(tc.filter)
		if err != nil {
			t.Errorf("ParseFilter(%q): %v", tc.filter, err)
			continue
		}
		// The error must not depend on the resource: same answer for a real user, an
		// empty one, and without any resource.
		for _, r := range []Resource{user, {}, nil} {
			_, err := Match(f, UserType, r)
			if err == nil {
				t.Errorf("Match(%q) succeeded, want an error", tc.filter)
				continue
			}
			fltRequireError(t, err, TypeInvalidFilter, tc.want)
		}
		fltRequireError(t, ValidateFilter(f, UserType), TypeInvalidFilter, tc.want)
	}
}

// TestMatchMalformedTrees feeds trees that ParseFilter never builds.
func TestMatchMalformedTrees(t *testing.T) {
	deep := Filter(fltPr("userName"))
	for range 10000 {
		deep = fltNot(deep)
	}
	wide := Filter(fltPr("userName"))
	for range 2 * MaxFilterLength {
		wide = fltOr(wide, fltPr("title"))
	}
	cases := []struct {
		name string
		f    Filter
		want string
	}{
		{"nil", nil, "empty or unsupported expression"},
		{"nil compare", (*CompareFilter)(nil), "empty or unsupported expression"},
		{"empty and", &AndFilter{}, "empty or unsupported expression"},
		{"half or", &OrFilter{Left: fltPr("a")}, "empty or unsupported expression"},
		{"empty not", &NotFilter{}, "empty or unsupported expression"},
		{"empty value path", &ValuePathFilter{Attr: fltA("emails")}, "empty or unsupported expression"},
		{"upper-case op", fltCmp("userName", "EQ", "x"), `unknown comparison operator "EQ"`},
		{"no name", fltCmp("", OpEq, "x"), "needs an attribute name"},
		{"int value", fltCmp("userName", OpEq, 5), "unsupported value of type int"},
		{"nested value path", fltVP("emails", fltVP("x", fltPr("y"))), "nested [...] filters are not supported"},
		{"value path with sub", fltVP("name.givenName", fltPr("y")), "not the sub-attribute name.givenName"},
		{"deep", deep, "too large or nested too deeply"},
		{"wide", wide, "too large or nested too deeply"},
	}
	user := fltLoad(t, "user.json")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Match(tc.f, UserType, user)
			fltRequireError(t, err, TypeInvalidFilter, tc.want)
			_ = EqualityTerms(tc.f) // must not panic
		})
	}
}

// TestMatchOddShapes runs every filter of the tables over resources of unexpected shape:
// nothing may panic, and a few shapes Entra produces must still match.
func TestMatchOddShapes(t *testing.T) {
	odd := []Resource{
		{},
		{"userName": json.Number("5"), "emails": "x", "name": []any{"a", nil}, "active": nil, "meta": "x", "id": true},
		{"emails": []any{json.Number("1"), nil, "x", []any{}, map[string]any{"value": []any{"a", map[string]any{}}}, map[string]any{"type": []any{}}}},
		{fltEnterprise: "not an object", "manager": map[string]any{"value": nil}, "members": map[string]any{"value": "m"}},
		{fltEnterprise: map[string]any{"manager": "bare-id"}, "meta": map[string]any{"lastModified": json.Number("3"), "created": "not a date"}},
		{"title": 3.5, "userName": int64(7), "displayName": 7, "groups": []any{[]any{[]any{}}}},
		{fltEnterprise: map[string]any{"manager": []any{map[string]any{"$ref": "x", "value": "legacy-id"}}}},
	}
	var filters []Filter
	for _, tc := range fltParseCases {
		f, err := ParseFilter(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		filters = append(filters, f)
	}
	for _, tc := range fltUserMatchCases {
		f, err := ParseFilter(tc.filter)
		if err != nil {
			t.Fatal(err)
		}
		filters = append(filters, f)
	}
	for _, r := range odd {
		for _, f := range filters {
			for _, typ := range []string{UserType, GroupType, "", "Device"} {
				if _, err := Match(f, typ, r); err != nil {
					if _, ok := err.(*Error); !ok {
						t.Fatalf("Match error %T is not *Error", err)
					}
				}
			}
		}
	}

	shapes := []struct {
		r      Resource
		filter string
		want   bool
	}{
		{odd[4], `manager eq "BARE-ID"`, true},
		{odd[4], `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager eq "bare-id"`, true},
		{odd[6], `manager eq "legacy-id"`, true},
		{odd[1], `emails eq "X"`, true},
		{odd[1], `userName eq 5`, true},
		{odd[1], `userName eq "5"`, true},
		{odd[5], `title eq 3.5`, true},
		{odd[5], `userName gt 6`, true},
		{odd[3], `manager pr`, true},
		{odd[3], `manager eq null`, false}, // present, though its value is null
		{odd[2], `emails pr`, true},
		{odd[2], `emails.value eq "a"`, true},
		{odd[2], `emails.type pr`, false},
		{odd[0], `emails eq null`, true},
		{Resource{"emails": []any{}}, `emails eq null`, true},
		{Resource{"emails": []any{}}, `emails pr`, false},
		{Resource{"emails": []any{nil}}, `emails pr`, false},
		{Resource{"title": ""}, `title pr`, false},
		{Resource{"name": map[string]any{}}, `name pr`, false},
		{Resource{"big": json.Number("123456789012345678901234567890")}, `big gt 123456789012345678901234567889`, true},
		{Resource{"big": json.Number("-123456789012345678901234567890")}, `big lt -123456789012345678901234567889`, true},
		{Resource{"big": json.Number("-0")}, `big eq 0`, true},
		{Resource{"n": json.Number("1e999")}, `n gt 1e308`, true},
	}
	for _, tc := range shapes {
		f, err := ParseFilter(tc.filter)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Match(f, UserType, tc.r)
		if err != nil || got != tc.want {
			t.Errorf("Match(%q) on %v = %v, %v; want %v", tc.filter, tc.r, got, err, tc.want)
		}
	}
}

func TestEqualityTerms(t *testing.T) {
	cases := []struct {
		filter string
		want   []*CompareFilter
	}{
		{`userName eq "x"`, []*CompareFilter{fltCmp("userName", OpEq, "x")}},
		{`userName eq "x" and active eq true`, []*CompareFilter{fltCmp("userName", OpEq, "x")}},
		{`id eq 54D382A4-2050-4C03-94D1-E769F1D15682 and manager eq 2819c223-7f76-453a-919d-413861904646`,
			[]*CompareFilter{fltCmp("id", OpEq, "54D382A4-2050-4C03-94D1-E769F1D15682"), fltCmp("manager", OpEq, "2819c223-7f76-453a-919d-413861904646")}},
		{`emails[type eq "work"].value eq "x"`,
			[]*CompareFilter{fltCmp("emails.type", OpEq, "work"), fltCmp("emails.value", OpEq, "x")}},
		{`emails[type eq "work" or type eq "home"].value eq "x"`, []*CompareFilter{fltCmp("emails.value", OpEq, "x")}},
		{`emails[value eq "a"] and userName eq "b"`, []*CompareFilter{fltCmp("emails.value", OpEq, "a"), fltCmp("userName", OpEq, "b")}},
		{`(userName eq "x" and displayName eq "y") and externalId eq z`,
			[]*CompareFilter{fltCmp("userName", OpEq, "x"), fltCmp("displayName", OpEq, "y"), fltCmp("externalId", OpEq, "z")}},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager eq "m"`, []*CompareFilter{fltURN(fltEnterprise, "manager", OpEq, "m")}},
		{`userName EQ "x"`, []*CompareFilter{fltCmp("userName", OpEq, "x")}},
		{`userName eq "x" or displayName eq "y"`, nil},
		{`not (userName eq "x")`, nil},
		{`not (emails[type eq "work"].value eq "x")`, nil},
		{`userName ne "x"`, nil},
		{`userName co "x"`, nil},
		{`externalId eq 123`, nil},
		{`userName eq null`, nil},
		{`active eq true`, nil},
		{`emails[type eq "work"] or userName eq "x"`, nil},
	}
	for _, tc := range cases {
		f, err := ParseFilter(tc.filter)
		if err != nil {
			t.Fatal(err)
		}
		got := EqualityTerms(f)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("EqualityTerms(%q) = %s, want %s", tc.filter, fltFormatTerms(got), fltFormatTerms(tc.want))
		}
	}
	if got := EqualityTerms(nil); got != nil {
		t.Errorf("EqualityTerms(nil) = %v", got)
	}
	// The terms are copies: changing them leaves the filter alone.
	f, _ := ParseFilter(`userName eq "x"`)
	EqualityTerms(f)[0].Value = "changed"
	if f.(*CompareFilter).Value != "x" {
		t.Error("EqualityTerms shares its results with the filter")
	}
}

// TestEqualityTermsNecessary checks the property the handler relies on: whenever a
// filter matches a resource, each of its equality terms matches it too.
func TestEqualityTermsNecessary(t *testing.T) {
	user, group := fltLoad(t, "user.json"), fltLoad(t, "group.json")
	var inputs []string
	for _, tc := range fltUserMatchCases {
		inputs = append(inputs, tc.filter)
	}
	for _, tc := range fltGroupMatchCases {
		inputs = append(inputs, tc.filter)
	}
	for _, in := range inputs {
		f, err := ParseFilter(in)
		if err != nil {
			t.Fatal(err)
		}
		fltCheckTermsNecessary(t, f, UserType, user)
		fltCheckTermsNecessary(t, f, GroupType, group)
	}
}

func fltCheckTermsNecessary(t testing.TB, f Filter, typ string, r Resource) {
	t.Helper()
	ok, err := Match(f, typ, r)
	if err != nil || !ok {
		return
	}
	for _, term := range EqualityTerms(f) {
		if ok, err := Match(term, typ, r); err != nil || !ok {
			t.Fatalf("%s matches but its term %s does not (%v)", fltFormat(f), fltFormat(term), err)
		}
	}
}

// fltFormat prints a filter in a syntax ParseFilter reads back to the same tree, with no
// more parentheses than the tree needs.
func fltFormat(f Filter) string {
	switch x := f.(type) {
	case *CompareFilter:
		s := fltFormatAttr(x.Attr) + " " + x.Op
		if x.Op == OpPr {
			return s
		}
		v, err := json.Marshal(x.Value)
		if err != nil {
			return s + " <unprintable>"
		}
		return s + " " + string(v)
	case *AndFilter:
		return fltParen(x.Left, false) + " and " + fltParen(x.Right, true)
	case *OrFilter:
		left := fltFormat(x.Left)
		if _, ok := x.Right.(*OrFilter); ok {
			return left + " or (" + fltFormat(x.Right) + ")"
		}
		return left + " or " + fltFormat(x.Right)
	case *NotFilter:
		return "not (" + fltFormat(x.Inner) + ")"
	case *ValuePathFilter:
		attr := fltFormatAttr(x.Attr)
		if and, ok := x.Inner.(*AndFilter); ok {
			if c, ok := and.Right.(*CompareFilter); ok && c.Attr.URN == "" && c.Attr.Sub == "" {
				return attr + "[" + fltFormat(and.Left) + "]." + fltFormat(c)
			}
		}
		return attr + "[" + fltFormat(x.Inner) + "]"
	}
	return "<nil>"
}

// fltParen prints an operand of "and": an or always needs parentheses, an and only on
// the right (the parser associates to the left).
func fltParen(f Filter, right bool) string {
	switch f.(type) {
	case *OrFilter:
		return "(" + fltFormat(f) + ")"
	case *AndFilter:
		if right {
			return "(" + fltFormat(f) + ")"
		}
	}
	return fltFormat(f)
}

func fltFormatAttr(a AttrPath) string {
	s := a.Name
	if a.URN != "" {
		s = a.URN + ":" + s
	}
	if a.Sub != "" {
		s += "." + a.Sub
	}
	return s
}

func fltFormatTerms(terms []*CompareFilter) string {
	parts := make([]string, len(terms))
	for i, c := range terms {
		parts[i] = fltFormat(c)
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

func BenchmarkParseFilter(b *testing.B) {
	filters := map[string]string{
		"userName":   `userName eq "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee"`,
		"idManager":  `id eq 54D382A4-2050-4C03-94D1-E769F1D15682 and manager eq 2819c223-7f76-453a-919d-413861904646`,
		"entraEmail": `emails[type eq "work"].value eq "Test_User_11bb11bb-cc22-dd33-ee44-55ff55ff55ff@testuser.com"`,
		"complex":    `userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org") and meta.lastModified gt "2011-05-13T04:42:34Z"`,
	}
	for name, in := range filters {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseFilter(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkMatch(b *testing.B) {
	user := fltLoad(b, "user.json")
	filters := map[string]string{
		"userName":   `userName eq "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee"`,
		"idManager":  `id eq 2441309d-8532-4e77-93ae-0f0a7c1b2c3d and manager eq 2819c223-7f76-453a-919d-413861904646`,
		"entraEmail": `emails[type eq "work"].value eq "Test_User_11bb11bb-cc22-dd33-ee44-55ff55ff55ff@testuser.com"`,
		"complex":    `userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org") and meta.lastModified gt "2011-05-13T04:42:34Z"`,
	}
	for name, in := range filters {
		f, err := ParseFilter(in)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Match(f, UserType, user); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
