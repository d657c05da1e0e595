package apidocs

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"go.yaml.in/yaml/v3"
)

// spec is the part of an OpenAPI 3 document Operations reads; paths keep the document's order.
type spec struct {
	OpenAPI string `yaml:"openapi"`
	Paths   ordered[pathItem]
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
	Method    string `yaml:"-"`
	Auth      string `yaml:"x-auth"`
	WebSocket bool   `yaml:"x-websocket"`
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
