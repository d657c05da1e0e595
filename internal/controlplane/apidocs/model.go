package apidocs

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"go.yaml.in/yaml/v3"
)

// spec is the part of an OpenAPI 3 document the docs page and Operations use. Maps whose order
// matters (paths, responses, properties, schemas) keep the document's order.
type spec struct {
	OpenAPI    string `yaml:"openapi"`
	Info       info
	Tags       []tag
	Paths      ordered[pathItem]
	Components components
}

type info struct {
	Title       string
	Version     string
	Description string
}

type tag struct {
	Name        string
	Description string
}

type components struct {
	SecuritySchemes ordered[securityScheme] `yaml:"securitySchemes"`
	Parameters      map[string]parameter
	Responses       map[string]response
	Schemas         ordered[*schema]
}

type securityScheme struct {
	Type         string
	Scheme       string
	BearerFormat string `yaml:"bearerFormat"`
	In           string
	Name         string
	Description  string
}

type pathItem struct {
	Get     *operation
	Put     *operation
	Post    *operation
	Delete  *operation
	Options *operation
	Head    *operation
	Patch   *operation
	Trace   *operation
}

type operation struct {
	Method      string `yaml:"-"`
	Tags        []string
	OperationID string `yaml:"operationId"`
	Summary     string
	Description string
	Auth        string            `yaml:"x-auth"`
	WebSocket   bool              `yaml:"x-websocket"`
	WSMessages  map[string]string `yaml:"x-websocket-messages"`
	Security    *[]map[string][]string
	Parameters  []parameter
	RequestBody *requestBody `yaml:"requestBody"`
	Responses   ordered[response]
}

type parameter struct {
	Ref         string `yaml:"$ref"`
	Name        string
	In          string
	Description string
	Required    bool
	Schema      *schema
}

type requestBody struct {
	Ref         string `yaml:"$ref"`
	Description string
	Required    bool
	Content     ordered[mediaType]
}

type response struct {
	Ref         string `yaml:"$ref"`
	Description string
	Content     ordered[mediaType]
}

type mediaType struct {
	Schema *schema
}

type schema struct {
	Ref                  string `yaml:"$ref"`
	Type                 string
	Format               string
	Description          string
	Pattern              string
	Enum                 []string
	Default              yaml.Node // Kind 0 when absent (a *yaml.Node field cannot hold a scalar)
	Example              yaml.Node
	Items                *schema
	Properties           ordered[*schema]
	Required             []string
	AdditionalProperties yaml.Node `yaml:"additionalProperties"`
	Minimum              *float64
	Maximum              *float64
	MinLength            *int `yaml:"minLength"`
	MaxLength            *int `yaml:"maxLength"`
	MaxItems             *int `yaml:"maxItems"`
}

// named is one entry of an ordered mapping.
type named[T any] struct {
	Name  string
	Value T
}

// ordered decodes a YAML mapping keeping its key order.
type ordered[T any] []named[T]

func (o *ordered[T]) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: expected a mapping", n.Line)
	}
	out := make(ordered[T], 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		var v T
		if err := n.Content[i+1].Decode(&v); err != nil {
			return fmt.Errorf("%s: %w", n.Content[i].Value, err)
		}
		out = append(out, named[T]{Name: n.Content[i].Value, Value: v})
	}
	*o = out
	return nil
}

// operations returns the item's operations with Method set, in a fixed method order.
func (p pathItem) operations() []*operation {
	var ops []*operation
	for _, m := range []struct {
		method string
		op     *operation
	}{
		{http.MethodGet, p.Get}, {http.MethodHead, p.Head}, {http.MethodPost, p.Post}, {http.MethodPut, p.Put},
		{http.MethodPatch, p.Patch}, {http.MethodDelete, p.Delete}, {http.MethodOptions, p.Options},
		{http.MethodTrace, p.Trace},
	} {
		if m.op != nil {
			m.op.Method = m.method
			ops = append(ops, m.op)
		}
	}
	return ops
}

func parse(doc []byte) (*spec, error) {
	var s spec
	if err := yaml.Unmarshal(doc, &s); err != nil {
		return nil, fmt.Errorf("parse openapi.yaml: %w", err)
	}
	if !strings.HasPrefix(s.OpenAPI, "3.") {
		return nil, fmt.Errorf("parse openapi.yaml: openapi version %q, want 3.x", s.OpenAPI)
	}
	if len(s.Paths) == 0 {
		return nil, errors.New("parse openapi.yaml: no paths")
	}
	return &s, nil
}

const (
	refParameters = "#/components/parameters/"
	refResponses  = "#/components/responses/"
	refSchemas    = "#/components/schemas/"
)

// parameter resolves a $ref parameter (an unresolvable one is returned as is).
func (s *spec) parameter(p parameter) parameter {
	if name, ok := strings.CutPrefix(p.Ref, refParameters); ok {
		if r, ok := s.Components.Parameters[name]; ok {
			return r
		}
	}
	return p
}

// response resolves a $ref response (an unresolvable one is returned as is).
func (s *spec) response(r response) response {
	if name, ok := strings.CutPrefix(r.Ref, refResponses); ok {
		if c, ok := s.Components.Responses[name]; ok {
			return c
		}
	}
	return r
}
