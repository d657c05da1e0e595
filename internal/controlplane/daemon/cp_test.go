package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/controlplane/apidocs"
	"github.com/wrenn/wrenn/internal/controlplane/daemon"
	"github.com/wrenn/wrenn/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func newServer(t *testing.T) *daemon.Server {
	t.Helper()
	s, err := daemon.New(context.Background(), daemon.Config{DatabaseURL: testutil.Postgres(t), DashboardURL: "http://localhost:8080", Version: "test"})
	if err != nil {
		t.Fatalf("daemon.New: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestRoutesMatchOpenAPI fails when a route exists in the router but not in openapi.yaml, or the other
// way round.
func TestRoutesMatchOpenAPI(t *testing.T) {
	s := newServer(t)
	ops, err := apidocs.Operations()
	if err != nil {
		t.Fatal(err)
	}
	spec := map[string]bool{}
	for _, op := range ops {
		spec[op.Method+" "+op.Path] = true
	}
	routes := map[string]bool{}
	for _, r := range s.Routes() {
		routes[r.Method+" "+r.Pattern] = true
	}
	var missingInSpec, missingInRouter []string
	for k := range routes {
		if !spec[k] {
			missingInSpec = append(missingInSpec, k)
		}
	}
	for k := range spec {
		if !routes[k] {
			missingInRouter = append(missingInRouter, k)
		}
	}
	slices.Sort(missingInSpec)
	slices.Sort(missingInRouter)
	if len(missingInSpec) > 0 {
		t.Errorf("routes served but missing from openapi.yaml:\n%v", missingInSpec)
	}
	if len(missingInRouter) > 0 {
		t.Errorf("operations in openapi.yaml the router does not serve:\n%v", missingInRouter)
	}
	if len(routes) < 100 {
		t.Errorf("only %d routes registered", len(routes))
	}
}

// TestServe starts the assembled control plane on a loopback port: /health, /openapi.yaml, /docs, a
// JSON 404 and 405, and a graceful stop when the context ends.
func TestServe(t *testing.T) {
	s := newServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	get := func(method, path string) (int, string, string) {
		req, _ := http.NewRequest(method, base+path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header.Get("Content-Type"), string(b)
	}
	status, _, body := get("GET", "/health")
	var h struct{ Status, Version string }
	if err := json.Unmarshal([]byte(body), &h); status != 200 || err != nil || h.Status != "ok" || h.Version != "test" {
		t.Fatalf("/health: %d %s", status, body)
	}
	if status, ctype, _ := get("GET", "/openapi.yaml"); status != 200 || ctype == "" {
		t.Fatalf("/openapi.yaml: %d %s", status, ctype)
	}
	if status, ctype, _ := get("GET", "/docs"); status != 200 || ctype[:9] != "text/html" {
		t.Fatalf("/docs: %d %s", status, ctype)
	}
	if status, _, body := get("GET", "/v1/nothing-here"); status != 404 || !json.Valid([]byte(body)) {
		t.Fatalf("unknown path: %d %s", status, body)
	}
	if status, _, body := get("PUT", "/health"); status != 405 || !json.Valid([]byte(body)) {
		t.Fatalf("wrong method: %d %s", status, body)
	}
	// Cleartext HTTP/2 with prior knowledge (h2c) is served too (docs/api.md, Port proxy).
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	defer h2c.CloseIdleConnections()
	res, err := (&http.Client{Transport: h2c}).Get(base + "/health")
	if err != nil {
		t.Fatalf("h2c: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.ProtoMajor != 2 {
		t.Fatalf("h2c /health: %d %s", res.StatusCode, res.Proto)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}
