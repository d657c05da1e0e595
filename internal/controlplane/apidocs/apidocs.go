// Package apidocs owns the control plane's OpenAPI document and serves it: GET /openapi.yaml (the
// document) and GET /docs (an HTML page rendered from it on the server, with no external resources).
//
// openapi.yaml is generated from openapi.src.yaml by ./gen (go generate), which adds the /v1/sandboxes
// alias of every /v1/capsules path and the /v1/admin/capsules copies of the capsule routes. Every
// operation carries x-auth (the route's authentication kind: none, JWT, KEY|JWT, ADMIN, HOST) and
// WebSocket routes x-websocket: true, so the document can be compared with the router (Operations).
package apidocs

//go:generate go run ./gen -in openapi.src.yaml -out openapi.yaml

import (
	_ "embed"
	"log/slog"
	"net/http"
	"slices"

	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
)

//go:embed openapi.yaml
var document []byte

// Auth values of x-auth; all but AuthNone equal auth.Kind.String() of the route's kind.
const (
	AuthNone     = "none"
	AuthJWT      = "JWT"
	AuthKeyOrJWT = "KEY|JWT"
	AuthAdmin    = "ADMIN"
	AuthHost     = "HOST"
)

// Operation is one method + path of the document.
type Operation struct {
	Method    string // upper case, e.g. GET
	Path      string // path template as the router registers it, e.g. /v1/capsules/{id}/exec
	Auth      string // x-auth: AuthNone, AuthJWT, AuthKeyOrJWT, AuthAdmin or AuthHost
	WebSocket bool   // x-websocket
}

// Document returns the OpenAPI document served at /openapi.yaml.
func Document() []byte { return slices.Clone(document) }

// Operations lists every operation of the document, in document order.
func Operations() ([]Operation, error) {
	spec, err := parse(document)
	if err != nil {
		return nil, err
	}
	var ops []Operation
	for _, p := range spec.Paths {
		for _, op := range p.Value.operations() {
			ops = append(ops, Operation{Method: op.Method, Path: p.Name, Auth: op.Auth, WebSocket: op.WebSocket})
		}
	}
	return ops, nil
}

// Register serves GET /openapi.yaml and GET /docs (public) on rt; docs is the dashboard, which renders
// the reference page (or, in a binary built without the dashboard, says how to build it).
func Register(rt *httpapi.Router, docs http.Handler) {
	rt.Handle(http.MethodGet, "/openapi.yaml", httpapi.KindNone, serveDocument)
	rt.Handle(http.MethodGet, "/docs", httpapi.KindNone, docs.ServeHTTP)
}

func serveDocument(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/yaml; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	if _, err := w.Write(document); err != nil {
		slog.DebugContext(r.Context(), "write openapi.yaml", "err", err)
	}
}
