package scim

import "strings"

// ServiceConfig is what the gateway advertises at /ServiceProviderConfig.
type ServiceConfig struct {
	MaxResults       int    // filter.maxResults and the cap on count
	DocumentationURI string // optional
}

// ServiceProviderConfig renders /ServiceProviderConfig (RFC 7643 §5), describing exactly
// what the gateway supports: PATCH, filters, ETags; no bulk, sort or password change.
func ServiceProviderConfig(base string, cfg ServiceConfig) map[string]any {
	doc := map[string]any{
		"schemas":        []any{SPConfigSchema},
		"patch":          map[string]any{"supported": true},
		"bulk":           map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":         map[string]any{"supported": true, "maxResults": cfg.MaxResults},
		"changePassword": map[string]any{"supported": false},
		"sort":           map[string]any{"supported": false},
		"etag":           map[string]any{"supported": true},
		"authenticationSchemes": []any{map[string]any{
			"type":        "oauthbearertoken",
			"name":        "OAuth Bearer Token",
			"description": "Authentication with a bearer token (the Secret Token field of Entra's provisioning configuration).",
			"specUri":     "https://www.rfc-editor.org/rfc/rfc6750",
			"primary":     true,
		}},
		"meta": map[string]any{
			"resourceType": "ServiceProviderConfig",
			"location":     base + "/ServiceProviderConfig",
		},
	}
	if cfg.DocumentationURI != "" {
		doc["documentationUri"] = cfg.DocumentationURI
	}
	return doc
}

// ResourceTypeDoc renders one resource type (RFC 7643 §6).
func ResourceTypeDoc(base string, rt *ResourceTypeDef) map[string]any {
	exts := []any{}
	for _, e := range rt.Extensions {
		exts = append(exts, map[string]any{"schema": e, "required": false})
	}
	return map[string]any{
		"schemas":          []any{ResourceTypeSchema},
		"id":               rt.Name,
		"name":             rt.Name,
		"endpoint":         rt.Endpoint,
		"description":      rt.Description,
		"schema":           rt.Schema,
		"schemaExtensions": exts,
		"meta": map[string]any{
			"resourceType": "ResourceType",
			"location":     base + "/ResourceTypes/" + rt.Name,
		},
	}
}

// SchemaDoc renders one schema definition (RFC 7643 §7). The common attributes (id,
// externalId, meta) are listed with the core schemas so a client sees every attribute.
func SchemaDoc(base string, s *Schema) map[string]any {
	attrs := s.Attributes
	if strings.EqualFold(s.ID, UserSchema) || strings.EqualFold(s.ID, GroupSchema) {
		attrs = append(append([]*Attribute{}, commonAttributes...), attrs...)
	}
	return map[string]any{
		"schemas":     []any{SchemaSchema},
		"id":          s.ID,
		"name":        s.Name,
		"description": s.Description,
		"attributes":  attrs,
		"meta": map[string]any{
			"resourceType": "Schema",
			"location":     base + "/Schemas/" + s.ID,
		},
	}
}

// ListResponse renders a ListResponse (RFC 7644 §3.4.2). Resources is never null.
func ListResponse(resources []any, total, startIndex int) map[string]any {
	if resources == nil {
		resources = []any{}
	}
	return map[string]any{
		"schemas":      []any{ListResponseSchema},
		"totalResults": total,
		"startIndex":   startIndex,
		"itemsPerPage": len(resources),
		"Resources":    resources,
	}
}
