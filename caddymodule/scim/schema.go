package scim

import (
	"slices"
	"strings"
)

// Attribute describes one attribute of a schema (RFC 7643 §7). The definitions below
// are served at /Schemas and drive filter comparison (caseExact, type), PATCH
// (multiValued, mutability) and canonical attribute names.
type Attribute struct {
	Name            string       `json:"name"`
	Type            string       `json:"type"`
	MultiValued     bool         `json:"multiValued"`
	Description     string       `json:"description,omitempty"`
	Required        bool         `json:"required"`
	CaseExact       bool         `json:"caseExact"`
	Mutability      string       `json:"mutability"`
	Returned        string       `json:"returned"`
	Uniqueness      string       `json:"uniqueness"`
	CanonicalValues []string     `json:"canonicalValues,omitempty"`
	ReferenceTypes  []string     `json:"referenceTypes,omitempty"`
	SubAttributes   []*Attribute `json:"subAttributes,omitempty"`
}

// Schema is a SCIM schema definition (RFC 7643 §7).
type Schema struct {
	ID          string
	Name        string
	Description string
	Attributes  []*Attribute
}

// ResourceTypeDef is a SCIM resource type (RFC 7643 §6).
type ResourceTypeDef struct {
	Name        string
	Endpoint    string
	Description string
	Schema      string
	Extensions  []string
}

// SubAttr returns the sub-attribute called name (case-insensitively), or nil.
func (a *Attribute) SubAttr(name string) *Attribute {
	if a == nil {
		return nil
	}
	return findAttr(a.SubAttributes, name)
}

// Attr returns the top-level attribute called name (case-insensitively), or nil.
func (s *Schema) Attr(name string) *Attribute {
	if s == nil {
		return nil
	}
	return findAttr(s.Attributes, name)
}

func findAttr(list []*Attribute, name string) *Attribute {
	for _, a := range list {
		if strings.EqualFold(a.Name, name) {
			return a
		}
	}
	return nil
}

// Mutability and returned keywords.
const (
	ReadOnly  = "readOnly"
	ReadWrite = "readWrite"
	Immutable = "immutable"
	WriteOnly = "writeOnly"
)

func str(name, desc string) *Attribute {
	return &Attribute{Name: name, Type: "string", Description: desc, Mutability: ReadWrite, Returned: "default", Uniqueness: "none"}
}

func boolean(name, desc string) *Attribute {
	return &Attribute{Name: name, Type: "boolean", Description: desc, Mutability: ReadWrite, Returned: "default", Uniqueness: "none"}
}

func ref(name, desc string, types ...string) *Attribute {
	return &Attribute{Name: name, Type: "reference", Description: desc, Mutability: ReadWrite, Returned: "default", Uniqueness: "none", ReferenceTypes: types, CaseExact: true}
}

func complexAttr(name, desc string, multi bool, subs ...*Attribute) *Attribute {
	return &Attribute{Name: name, Type: "complex", Description: desc, MultiValued: multi, Mutability: ReadWrite, Returned: "default", Uniqueness: "none", SubAttributes: subs}
}

// multiValuedOf builds the standard multi-valued sub-attributes (value, display, type,
// primary) of RFC 7643 §2.4, with canonical type values. A value of type reference needs
// its referenceTypes set by the caller (RFC 7643 §7).
func multiValuedOf(name, desc, valueType string, types ...string) *Attribute {
	value := str("value", "The value of the "+name+" entry.")
	value.Type = valueType
	typ := str("type", "A label indicating the attribute's function.")
	typ.CanonicalValues = types
	return complexAttr(name, desc, true,
		value,
		str("display", "A human-readable name, primarily used for display purposes."),
		typ,
		boolean("primary", "Indicates the primary or preferred value."),
	)
}

func readOnly(a *Attribute) *Attribute { a.Mutability = ReadOnly; return a }

var userSchema = &Schema{
	ID:          UserSchema,
	Name:        "User",
	Description: "User Account",
	Attributes: []*Attribute{
		func() *Attribute {
			a := str("userName", "Unique identifier for the User, typically used by the user to directly authenticate to the service provider. Compared case-insensitively.")
			a.Required = true
			a.Uniqueness = "server"
			return a
		}(),
		complexAttr("name", "The components of the user's real name.", false,
			str("formatted", "The full name, including all middle names, titles, and suffixes as appropriate, formatted for display."),
			str("familyName", "The family name of the User."),
			str("givenName", "The given name of the User."),
			str("middleName", "The middle name(s) of the User."),
			str("honorificPrefix", "The honorific prefix(es) of the User."),
			str("honorificSuffix", "The honorific suffix(es) of the User."),
		),
		str("displayName", "The name of the User, suitable for display to end-users."),
		str("nickName", "The casual way to address the user in real life."),
		ref("profileUrl", "A fully qualified URL pointing to a page representing the User's online profile.", "external"),
		str("title", "The user's title, such as \"Vice President\"."),
		str("userType", "Used to identify the relationship between the organization and the user."),
		str("preferredLanguage", "Indicates the User's preferred written or spoken language."),
		str("locale", "Used to indicate the User's default location for purposes of localizing items."),
		str("timezone", "The User's time zone in the 'Olson' time zone database format."),
		boolean("active", "A Boolean value indicating the User's administrative status."),
		func() *Attribute {
			a := str("password", "The User's cleartext password. Never returned.")
			a.Mutability = WriteOnly
			a.Returned = "never"
			return a
		}(),
		multiValuedOf("emails", "Email addresses for the user.", "string", "work", "home", "other"),
		multiValuedOf("phoneNumbers", "Phone numbers for the User.", "string", "work", "home", "mobile", "fax", "pager", "other"),
		multiValuedOf("ims", "Instant messaging addresses for the User.", "string", "aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"),
		func() *Attribute {
			a := multiValuedOf("photos", "URLs of photos of the User.", "reference", "photo", "thumbnail")
			a.SubAttr("value").ReferenceTypes = []string{"external"} // as RFC 7643 §8.7.1 says
			return a
		}(),
		complexAttr("addresses", "A physical mailing address for this User.", true,
			str("formatted", "The full mailing address, formatted for display or use with a mailing label."),
			str("streetAddress", "The full street address component."),
			str("locality", "The city or locality component."),
			str("region", "The state or region component."),
			str("postalCode", "The zip code or postal code component."),
			str("country", "The country name component."),
			func() *Attribute {
				a := str("type", "A label indicating the attribute's function.")
				a.CanonicalValues = []string{"work", "home", "other"}
				return a
			}(),
			boolean("primary", "Indicates the primary mailing address."),
		),
		readOnly(complexAttr("groups", "A list of groups to which the user belongs, either through direct membership or through nested groups. Read-only: change memberships through the Group resource.", true,
			readOnly(str("value", "The identifier of the User's group.")),
			readOnly(ref("$ref", "The URI of the corresponding 'Group' resource.", "Group")),
			readOnly(str("display", "A human-readable name of the group.")),
			func() *Attribute {
				a := readOnly(str("type", "A label indicating the attribute's function."))
				a.CanonicalValues = []string{"direct", "indirect"}
				return a
			}(),
		)),
		multiValuedOf("entitlements", "A list of entitlements for the User.", "string"),
		multiValuedOf("roles", "A list of roles for the User.", "string"),
		multiValuedOf("x509Certificates", "A list of certificates issued to the User.", "binary"),
	},
}

var enterpriseUserSchema = &Schema{
	ID:          EnterpriseUserSchema,
	Name:        "EnterpriseUser",
	Description: "Enterprise User",
	Attributes: []*Attribute{
		str("employeeNumber", "Numeric or alphanumeric identifier assigned to a person."),
		str("costCenter", "Identifies the name of a cost center."),
		str("organization", "Identifies the name of an organization."),
		str("division", "Identifies the name of a division."),
		str("department", "Identifies the name of a department."),
		complexAttr("manager", "The User's manager, stored and returned as {\"value\": id}: the manager's SCIM id, never dereferenced; a $ref or displayName sent with it is ignored.", false,
			str("value", "The id of the SCIM resource representing the User's manager."),
			ref("$ref", "The URI of the SCIM resource representing the User's manager.", "User"),
			readOnly(str("displayName", "The displayName of the User's manager.")),
		),
	},
}

var groupSchema = &Schema{
	ID:          GroupSchema,
	Name:        "Group",
	Description: "Group",
	Attributes: []*Attribute{
		func() *Attribute {
			a := str("displayName", "A human-readable name for the Group. Unique, compared case-insensitively.")
			a.Required = true
			a.Uniqueness = "server"
			return a
		}(),
		complexAttr("members", "A list of members of the Group: Users or Groups.", true,
			func() *Attribute {
				a := str("value", "Identifier of the member of this Group.")
				a.Mutability = Immutable
				return a
			}(),
			func() *Attribute {
				a := ref("$ref", "The URI of the member resource. Never dereferenced.", "User", "Group")
				a.Mutability = Immutable
				return a
			}(),
			func() *Attribute {
				a := str("type", "The type of the member: User or Group. Resolved by the gateway when absent.")
				a.Mutability = Immutable
				a.CanonicalValues = []string{"User", "Group"}
				return a
			}(),
			str("display", "A human-readable name of the member."),
		),
	},
}

// commonAttributes are defined for every resource (RFC 7643 §3.1).
var commonAttributes = []*Attribute{
	func() *Attribute {
		a := readOnly(str("id", "Unique identifier for the resource, assigned by the gateway."))
		a.CaseExact = true
		a.Returned = "always"
		a.Uniqueness = "server"
		return a
	}(),
	func() *Attribute {
		a := str("externalId", "An identifier for the resource as defined by the provisioning client.")
		a.CaseExact = true
		return a
	}(),
	readOnly(complexAttr("meta", "Resource metadata.", false,
		readOnly(str("resourceType", "The name of the resource type of the resource.")),
		readOnly(&Attribute{Name: "created", Type: "dateTime", Mutability: ReadOnly, Returned: "default", Uniqueness: "none", Description: "When the resource was added to the gateway."}),
		readOnly(&Attribute{Name: "lastModified", Type: "dateTime", Mutability: ReadOnly, Returned: "default", Uniqueness: "none", Description: "When the resource was last changed."}),
		readOnly(ref("location", "The URI of the resource.", "uri")),
		func() *Attribute {
			a := readOnly(str("version", "The weak entity tag of the resource."))
			a.CaseExact = true
			return a
		}(),
	)),
}

var schemas = []*Schema{userSchema, enterpriseUserSchema, groupSchema}

// Schemas returns the schema definitions served at /Schemas, in a stable order.
func Schemas() []*Schema { return schemas }

// SchemaByID returns the schema with the given URN (case-insensitively), or nil.
func SchemaByID(id string) *Schema {
	for _, s := range schemas {
		if strings.EqualFold(s.ID, id) {
			return s
		}
	}
	return nil
}

var resourceTypes = []*ResourceTypeDef{
	{Name: UserType, Endpoint: "/Users", Description: "User Account", Schema: UserSchema, Extensions: []string{EnterpriseUserSchema}},
	{Name: GroupType, Endpoint: "/Groups", Description: "Group", Schema: GroupSchema},
}

// ResourceTypes returns the supported resource types, Users first.
func ResourceTypes() []*ResourceTypeDef { return resourceTypes }

// ResourceTypeByName returns the resource type called name (case-insensitively), or nil.
func ResourceTypeByName(name string) *ResourceTypeDef {
	for _, rt := range resourceTypes {
		if strings.EqualFold(rt.Name, name) {
			return rt
		}
	}
	return nil
}

// FindAttr resolves p against the schemas of resourceType: the core schema when p has no
// URN (plus the common attributes id, externalId and meta), the named schema otherwise.
// It returns the attribute definition and the schema URN it belongs to ("" for common
// attributes), or nil when the attribute is not defined (custom extension attributes
// are allowed and stored verbatim; they compare case-insensitively as strings).
//
// It looks names up in the resource type's index (see canonIndex), which finds what a
// case-insensitive scan of the schemas would, without the scan: every write checks each
// of its attributes through here.
func FindAttr(resourceType string, p AttrPath) (*Attribute, string) {
	ix := canonIndexFor(resourceType)
	if ix == nil {
		return nil, ""
	}
	if p.URN != "" {
		s := ix.schemaFor(p.URN) // the core schema or one of the type's extensions
		if s == nil {
			return nil, p.URN
		}
		return s.attrs.find(p.Name), s.schema.ID
	}
	a := ix.attrs.find(p.Name) // the common attributes, then the core schema's
	if a != nil && slices.Contains(commonAttributes, a) {
		return a, ""
	}
	return a, ix.schemas[0].schema.ID
}

func containsFold(list []string, s string) bool {
	for _, e := range list {
		if strings.EqualFold(e, s) {
			return true
		}
	}
	return false
}

// foreignSchema checks a schema URN used on a resource of type rt (as a key, a path's
// prefix or in "schemas"): one the gateway defines for another resource type (the Group
// schema on a User, the enterprise User extension on a Group) names no attribute of rt.
// Stored as an extension it would give a User a Group's attributes and the Group schema
// in its "schemas", so it is 400 with errType; other URNs (custom extensions, Entra's
// ADSCIM group schema) pass.
func foreignSchema(rt *ResourceTypeDef, urn, errType string) error {
	s := SchemaByID(urn)
	if s == nil || rt == nil || strings.EqualFold(s.ID, rt.Schema) || containsFold(rt.Extensions, s.ID) {
		return nil
	}
	owner := "another resource type"
	for _, other := range resourceTypes {
		if strings.EqualFold(other.Schema, s.ID) || containsFold(other.Extensions, s.ID) {
			owner = other.Name + " resources"
		}
	}
	return BadRequest(errType, "%s is the schema of %s, not of a %s: a %s takes %s and its extensions (see /ResourceTypes/%s)", s.ID, owner, rt.Name, rt.Name, rt.Schema, rt.Name)
}
