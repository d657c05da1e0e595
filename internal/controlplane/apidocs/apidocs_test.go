package apidocs_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/wrenn/wrenn/internal/controlplane/apidocs"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
)

// contractRoutes is the contract's route list (wrenn-api.md docs/api.md-docs/api.md) as the control plane serves it
// today, plus GET /v1/auth/providers (which OAuth providers are configured, for the dashboard). The
// OAuth routes are served only when a provider is configured. Capsule routes are listed once under
// /v1/capsules; the test expects their /v1/sandboxes alias too.
var contractRoutes = []apidocs.Operation{
	// docs/api.md
	{Method: "GET", Path: "/health", Auth: "none"},
	{Method: "GET", Path: "/openapi.yaml", Auth: "none"},
	{Method: "GET", Path: "/docs", Auth: "none"},
	// docs/api.md
	{Method: "POST", Path: "/v1/auth/signup", Auth: "none"},
	{Method: "POST", Path: "/v1/auth/activate", Auth: "none"},
	{Method: "POST", Path: "/v1/auth/login", Auth: "none"},
	{Method: "POST", Path: "/v1/auth/switch-team", Auth: "JWT"},
	{Method: "GET", Path: "/v1/me", Auth: "JWT"},
	{Method: "PATCH", Path: "/v1/me", Auth: "JWT"},
	{Method: "DELETE", Path: "/v1/me", Auth: "JWT"},
	{Method: "POST", Path: "/v1/me/password", Auth: "JWT"},
	{Method: "POST", Path: "/v1/me/password/reset", Auth: "none"},
	{Method: "POST", Path: "/v1/me/password/reset/confirm", Auth: "none"},
	{Method: "DELETE", Path: "/v1/me/providers/{provider}", Auth: "JWT"},
	{Method: "GET", Path: "/v1/me/providers/{provider}/connect", Auth: "JWT"},
	{Method: "GET", Path: "/v1/auth/providers", Auth: "none"},
	{Method: "GET", Path: "/auth/oauth/{provider}", Auth: "none"},
	{Method: "GET", Path: "/auth/oauth/{provider}/callback", Auth: "none"},
	{Method: "GET", Path: "/v1/auth/oauth/{provider}", Auth: "none"},
	{Method: "GET", Path: "/v1/auth/oauth/{provider}/callback", Auth: "none"},
	// docs/api.md
	{Method: "POST", Path: "/v1/api-keys", Auth: "JWT"},
	{Method: "GET", Path: "/v1/api-keys", Auth: "JWT"},
	{Method: "DELETE", Path: "/v1/api-keys/{id}", Auth: "JWT"},
	// docs/api.md
	{Method: "GET", Path: "/v1/teams", Auth: "JWT"},
	{Method: "POST", Path: "/v1/teams", Auth: "JWT"},
	{Method: "GET", Path: "/v1/teams/{id}", Auth: "JWT"},
	{Method: "PATCH", Path: "/v1/teams/{id}", Auth: "JWT"},
	{Method: "DELETE", Path: "/v1/teams/{id}", Auth: "JWT"},
	{Method: "GET", Path: "/v1/teams/{id}/quotas", Auth: "JWT"},
	{Method: "GET", Path: "/v1/teams/{id}/members", Auth: "JWT"},
	{Method: "POST", Path: "/v1/teams/{id}/members", Auth: "JWT"},
	{Method: "PATCH", Path: "/v1/teams/{id}/members/{uid}", Auth: "JWT"},
	{Method: "DELETE", Path: "/v1/teams/{id}/members/{uid}", Auth: "JWT"},
	{Method: "POST", Path: "/v1/teams/{id}/leave", Auth: "JWT"},
	{Method: "GET", Path: "/v1/users/search", Auth: "JWT"},
	// docs/api.md (+ /v1/sandboxes alias)
	{Method: "POST", Path: "/v1/capsules", Auth: "KEY|JWT"},
	{Method: "GET", Path: "/v1/capsules", Auth: "KEY|JWT"},
	{Method: "GET", Path: "/v1/capsules/stats", Auth: "KEY|JWT"},
	{Method: "GET", Path: "/v1/capsules/{id}", Auth: "KEY|JWT"},
	{Method: "DELETE", Path: "/v1/capsules/{id}", Auth: "KEY|JWT"},
	{Method: "POST", Path: "/v1/capsules/{id}/exec", Auth: "KEY|JWT"},
	{Method: "GET", Path: "/v1/capsules/{id}/exec/stream", Auth: "KEY|JWT", WebSocket: true},
	{Method: "GET", Path: "/v1/capsules/{id}/processes", Auth: "KEY|JWT"},
	{Method: "DELETE", Path: "/v1/capsules/{id}/processes/{selector}", Auth: "KEY|JWT"},
	{Method: "GET", Path: "/v1/capsules/{id}/processes/{selector}/stream", Auth: "KEY|JWT", WebSocket: true},
	{Method: "POST", Path: "/v1/capsules/{id}/ping", Auth: "KEY|JWT"},
	{Method: "POST", Path: "/v1/capsules/{id}/pause", Auth: "KEY|JWT"},
	{Method: "POST", Path: "/v1/capsules/{id}/resume", Auth: "KEY|JWT"},
	{Method: "POST", Path: "/v1/capsules/{id}/fork", Auth: "KEY|JWT"},
	{Method: "GET", Path: "/v1/capsules/{id}/metrics", Auth: "KEY|JWT"},
	{Method: "POST", Path: "/v1/capsules/{id}/files/read", Auth: "KEY|JWT"},
	{Method: "POST", Path: "/v1/capsules/{id}/files/write", Auth: "KEY|JWT"},
	{Method: "POST", Path: "/v1/capsules/{id}/files/stream/read", Auth: "KEY|JWT"},
	{Method: "POST", Path: "/v1/capsules/{id}/files/stream/write", Auth: "KEY|JWT"},
	{Method: "POST", Path: "/v1/capsules/{id}/files/list", Auth: "KEY|JWT"},
	{Method: "POST", Path: "/v1/capsules/{id}/files/mkdir", Auth: "KEY|JWT"},
	{Method: "POST", Path: "/v1/capsules/{id}/files/remove", Auth: "KEY|JWT"},
	{Method: "GET", Path: "/v1/capsules/{id}/pty", Auth: "KEY|JWT", WebSocket: true},
	// docs/api.md
	{Method: "POST", Path: "/v1/snapshots", Auth: "KEY|JWT"},
	{Method: "GET", Path: "/v1/snapshots", Auth: "KEY|JWT"},
	{Method: "DELETE", Path: "/v1/snapshots/{name}", Auth: "KEY|JWT"},
	// docs/api.md
	{Method: "GET", Path: "/v1/admin/teams", Auth: "ADMIN"},
	{Method: "PUT", Path: "/v1/admin/teams/{id}/byoc", Auth: "ADMIN"},
	{Method: "GET", Path: "/v1/admin/teams/{id}/quotas", Auth: "ADMIN"},
	{Method: "PUT", Path: "/v1/admin/teams/{id}/quotas", Auth: "ADMIN"},
	{Method: "DELETE", Path: "/v1/admin/teams/{id}", Auth: "ADMIN"},
	{Method: "GET", Path: "/v1/admin/users", Auth: "ADMIN"},
	{Method: "PUT", Path: "/v1/admin/users/{id}/active", Auth: "ADMIN"},
	{Method: "GET", Path: "/v1/admin/templates", Auth: "ADMIN"},
	{Method: "DELETE", Path: "/v1/admin/templates/{name}", Auth: "ADMIN"},
	{Method: "POST", Path: "/v1/admin/builds", Auth: "ADMIN"},
	{Method: "GET", Path: "/v1/admin/builds", Auth: "ADMIN"},
	{Method: "GET", Path: "/v1/admin/builds/{id}", Auth: "ADMIN"},
	{Method: "POST", Path: "/v1/admin/builds/{id}/cancel", Auth: "ADMIN"},
	{Method: "GET", Path: "/v1/admin/builds/{id}/events", Auth: "ADMIN", WebSocket: true},
	{Method: "PUT", Path: "/v1/admin/templates/{name}/pool", Auth: "ADMIN"},
	{Method: "POST", Path: "/v1/admin/capsules", Auth: "ADMIN"},
	{Method: "GET", Path: "/v1/admin/capsules", Auth: "ADMIN"},
	{Method: "GET", Path: "/v1/admin/capsules/{id}", Auth: "ADMIN"},
	{Method: "DELETE", Path: "/v1/admin/capsules/{id}", Auth: "ADMIN"},
	{Method: "POST", Path: "/v1/admin/capsules/{id}/snapshot", Auth: "ADMIN"},
	{Method: "POST", Path: "/v1/admin/capsules/{id}/exec", Auth: "ADMIN"},
	{Method: "GET", Path: "/v1/admin/capsules/{id}/exec/stream", Auth: "ADMIN", WebSocket: true},
	{Method: "POST", Path: "/v1/admin/capsules/{id}/files/read", Auth: "ADMIN"},
	{Method: "POST", Path: "/v1/admin/capsules/{id}/files/write", Auth: "ADMIN"},
	{Method: "POST", Path: "/v1/admin/capsules/{id}/files/list", Auth: "ADMIN"},
	{Method: "POST", Path: "/v1/admin/capsules/{id}/files/mkdir", Auth: "ADMIN"},
	{Method: "POST", Path: "/v1/admin/capsules/{id}/files/remove", Auth: "ADMIN"},
	{Method: "GET", Path: "/v1/admin/capsules/{id}/metrics", Auth: "ADMIN"},
	{Method: "GET", Path: "/v1/admin/capsules/{id}/pty", Auth: "ADMIN", WebSocket: true},
	{Method: "GET", Path: "/v1/admin/capsules/{id}/processes", Auth: "ADMIN"},
	{Method: "DELETE", Path: "/v1/admin/capsules/{id}/processes/{selector}", Auth: "ADMIN"},
	{Method: "GET", Path: "/v1/admin/capsules/{id}/processes/{selector}/stream", Auth: "ADMIN", WebSocket: true},
	{Method: "GET", Path: "/v1/admin/audit-logs", Auth: "ADMIN"},
	// docs/api.md
	{Method: "POST", Path: "/v1/hosts", Auth: "JWT"},
	{Method: "GET", Path: "/v1/hosts", Auth: "JWT"},
	{Method: "GET", Path: "/v1/hosts/{id}", Auth: "JWT"},
	{Method: "DELETE", Path: "/v1/hosts/{id}", Auth: "JWT"},
	{Method: "GET", Path: "/v1/hosts/{id}/delete-preview", Auth: "JWT"},
	{Method: "POST", Path: "/v1/hosts/{id}/token", Auth: "JWT"},
	{Method: "GET", Path: "/v1/hosts/{id}/tags", Auth: "JWT"},
	{Method: "POST", Path: "/v1/hosts/{id}/tags", Auth: "JWT"},
	{Method: "DELETE", Path: "/v1/hosts/{id}/tags/{tag}", Auth: "JWT"},
	{Method: "POST", Path: "/v1/hosts/register", Auth: "none"},
	{Method: "POST", Path: "/v1/hosts/auth/refresh", Auth: "none"},
	{Method: "POST", Path: "/v1/hosts/{id}/heartbeat", Auth: "HOST"},
	// docs/api.md
	{Method: "GET", Path: "/v1/audit-logs", Auth: "JWT"},
	// docs/api.md
	{Method: "POST", Path: "/v1/channels", Auth: "JWT"},
	{Method: "GET", Path: "/v1/channels", Auth: "JWT"},
	{Method: "GET", Path: "/v1/channels/{id}", Auth: "JWT"},
	{Method: "PATCH", Path: "/v1/channels/{id}", Auth: "JWT"},
	{Method: "PUT", Path: "/v1/channels/{id}/config", Auth: "JWT"},
	{Method: "DELETE", Path: "/v1/channels/{id}", Auth: "JWT"},
	{Method: "POST", Path: "/v1/channels/test", Auth: "JWT"},
}

func expectedOperations() []apidocs.Operation {
	var want []apidocs.Operation
	for _, op := range contractRoutes {
		want = append(want, op)
		if rest, ok := strings.CutPrefix(op.Path, "/v1/capsules"); ok {
			alias := op
			alias.Path = "/v1/sandboxes" + rest
			want = append(want, alias)
		}
	}
	return want
}

func opKey(o apidocs.Operation) string { return o.Method + " " + o.Path }

func TestOperationsMatchContract(t *testing.T) {
	got, err := apidocs.Operations()
	if err != nil {
		t.Fatal(err)
	}
	want := expectedOperations()
	index := map[string]apidocs.Operation{}
	for _, o := range got {
		if _, dup := index[opKey(o)]; dup {
			t.Errorf("duplicate operation %s", opKey(o))
		}
		index[opKey(o)] = o
	}
	for _, w := range want {
		g, ok := index[opKey(w)]
		if !ok {
			t.Errorf("missing from the document: %s", opKey(w))
			continue
		}
		if g != w {
			t.Errorf("%s: document has %+v, contract says %+v", opKey(w), g, w)
		}
		delete(index, opKey(w))
	}
	for k := range index {
		t.Errorf("in the document but not in the contract list: %s", k)
	}
	if len(got) != len(want) {
		t.Errorf("document has %d operations, want %d", len(got), len(want))
	}
}

func loadDocument(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(apidocs.Document())
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return doc
}

func TestDocumentIsValidOpenAPI(t *testing.T) {
	doc := loadDocument(t)
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("validate: %v", err)
	}
}

// securityOf returns the scheme names of each security requirement ("" for an empty one).
func securityOf(reqs openapi3.SecurityRequirements) []string {
	var out []string
	for _, r := range reqs {
		if len(r) == 0 {
			out = append(out, "")
		}
		for name := range r {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func TestEveryOperationIsComplete(t *testing.T) {
	doc := loadDocument(t)
	wantSecurity := map[string][]string{
		"none":    nil,
		"JWT":     {"bearerAuth"},
		"KEY|JWT": {"apiKey", "bearerAuth"},
		"ADMIN":   {"bearerAuth"},
		"HOST":    {"hostToken"},
	}
	n := 0
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			n++
			name := method + " " + path
			if strings.TrimSpace(op.Summary) == "" {
				t.Errorf("%s: no summary", name)
			}
			if op.OperationID == "" {
				t.Errorf("%s: no operationId", name)
			}
			if len(op.Tags) == 0 {
				t.Errorf("%s: no tag", name)
			}
			if op.Responses == nil || op.Responses.Len() == 0 {
				t.Errorf("%s: no responses", name)
			}
			if op.Security == nil {
				t.Errorf("%s: no security (use security: [] for a public route)", name)
				continue
			}
			auth, _ := op.Extensions["x-auth"].(string)
			want, known := wantSecurity[auth]
			if !known {
				t.Errorf("%s: x-auth %q is not one of none, JWT, KEY|JWT, ADMIN, HOST", name, auth)
				continue
			}
			ws, _ := op.Extensions["x-websocket"].(bool)
			if ws {
				want = append(slices.Clone(want), "") // WebSockets may authenticate with their first message
				slices.Sort(want)
				if method != http.MethodGet {
					t.Errorf("%s: WebSocket route must be GET", name)
				}
				if op.Responses.Value("101") == nil {
					t.Errorf("%s: WebSocket route without a 101 response", name)
				}
				if !strings.Contains(op.Description, "Server → client") {
					t.Errorf("%s: WebSocket route does not describe its messages", name)
				}
			}
			if got := securityOf(*op.Security); !slices.Equal(got, want) {
				t.Errorf("%s: security %v does not match x-auth %s (want %v)", name, got, auth, want)
			}
			for code, ref := range op.Responses.Map() {
				if code[0] < '4' {
					continue
				}
				mt := ref.Value.Content.Get("application/json")
				if mt == nil || mt.Schema == nil || mt.Schema.Ref != "#/components/schemas/Error" {
					t.Errorf("%s: response %s does not use the Error schema", name, code)
				}
			}
		}
	}
	if ops, _ := apidocs.Operations(); n != len(ops) {
		t.Errorf("kin-openapi sees %d operations, Operations() %d", n, len(ops))
	}
}

func TestRequiredSchemas(t *testing.T) {
	doc := loadDocument(t)
	for _, name := range []string{
		"Capsule", "Template", "Host", "Team", "Member", "AuthResponse", "Process", "FileEntry", "AuditEntry",
		"Channel", "AdminTeam", "AdminUser", "Error", "APIKey", "APIKeyCreated", "ExecResult", "TeamStats",
		"CapsuleMetrics", "HostCredentials", "PtyClientMessage", "PtyServerMessage", "WSErrorFrame",
	} {
		if doc.Components.Schemas[name] == nil {
			t.Errorf("schema %s missing", name)
		}
	}
	for _, name := range []string{"bearerAuth", "apiKey", "hostToken"} {
		if doc.Components.SecuritySchemes[name] == nil {
			t.Errorf("security scheme %s missing", name)
		}
	}
}

func serve(t *testing.T) (*httptest.Server, *httpapi.Router) {
	t.Helper()
	rt := httpapi.NewRouter(nil) // public routes never reach the authenticator
	apidocs.Register(rt, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "dashboard")
	}))
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	return srv, rt
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestRegister(t *testing.T) {
	_, rt := serve(t)
	var got []string
	for _, r := range rt.Routes() {
		if r.Kind != httpapi.KindNone || r.WebSocket {
			t.Errorf("%s %s: not a public HTTP route", r.Method, r.Pattern)
		}
		got = append(got, r.Method+" "+r.Pattern)
	}
	if want := []string{"GET /openapi.yaml", "GET /docs"}; !slices.Equal(got, want) {
		t.Errorf("routes %v, want %v", got, want)
	}
}

func TestServeDocument(t *testing.T) {
	srv, _ := serve(t)
	resp, body := get(t, srv.URL+"/openapi.yaml")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/yaml") {
		t.Errorf("Content-Type %q", ct)
	}
	if body != string(apidocs.Document()) {
		t.Error("served document differs from Document()")
	}
	if _, err := openapi3.NewLoader().LoadFromData([]byte(body)); err != nil {
		t.Errorf("served document does not load: %v", err)
	}

	resp, body = get(t, srv.URL+"/openapi.yaml/x")
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `"not_found"`) {
		t.Errorf("unknown path: %d %s", resp.StatusCode, body)
	}
}

func TestServeDocs(t *testing.T) {
	srv, _ := serve(t)
	resp, page := get(t, srv.URL+"/docs")
	if resp.StatusCode != http.StatusOK || page != "dashboard" {
		t.Fatalf("/docs: %d %q, want the docs handler's answer", resp.StatusCode, page)
	}
}
