package telemetry_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wrenn/wrenn/internal/telemetry"
	"github.com/wrenn/wrenn/internal/telemetry/telemetrytest"
)

// TestHTTPMetrics: the middleware labels requests with their route and status class and keeps
// streaming (Flush) and WebSocket upgrades (Hijack) working.
func TestHTTPMetrics(t *testing.T) {
	m := telemetry.NewHTTPMetrics("test")
	reg := telemetry.NewRegistry("test", "v1")
	reg.MustRegister(m.Collectors()...)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "missing" {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		_, _ = io.WriteString(w, "one")
		http.NewResponseController(w).Flush()
		_, _ = io.WriteString(w, "two")
	})
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		_ = c.Write(r.Context(), websocket.MessageText, []byte("hello"))
		_, _, _ = c.Read(r.Context())
	})
	mux.HandleFunc("GET /empty", func(http.ResponseWriter, *http.Request) {})
	route := func(r *http.Request) string { _, p := mux.Handler(r); return p }
	srv := httptest.NewServer(m.Middleware(mux, route))
	defer srv.Close()

	get := func(path string) string {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	if b := get("/items/1"); b != "onetwo" {
		t.Fatalf("streamed body %q", b)
	}
	get("/items/missing")
	get("/empty")
	get("/nowhere")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+srv.URL[len("http"):]+"/ws", nil)
	if err != nil {
		t.Fatalf("websocket through the middleware: %v", err)
	}
	if _, b, err := c.Read(ctx); err != nil || string(b) != "hello" {
		t.Fatalf("websocket read: %q %v", b, err)
	}
	c.Close(websocket.StatusNormalClosure, "")

	metrics := httptest.NewServer(telemetry.MetricsHandler(reg, ""))
	defer metrics.Close()
	n := "test_http_request_duration_seconds_count"
	eq := telemetrytest.Eq
	deadline := time.Now().Add(30 * time.Second)
	for { // the WebSocket request is observed when its handler returns
		if _, ok := telemetrytest.Scrape(t, metrics.URL, "").Get(n, "route", "GET /ws"); ok || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := telemetrytest.Scrape(t, metrics.URL, "")
	s.Want(t, eq(1), n, "route", "GET /items/{id}", "method", "GET", "status", "2xx")
	s.Want(t, eq(1), n, "route", "GET /items/{id}", "method", "GET", "status", "4xx")
	s.Want(t, eq(1), n, "route", "GET /empty", "status", "2xx")
	s.Want(t, eq(1), n, "route", "unmatched", "status", "4xx")
	s.Want(t, eq(1), n, "route", "GET /ws", "status", "1xx")
	s.Want(t, eq(1), "test_build_info", "version", "v1")
}

func TestMetricsToken(t *testing.T) {
	srv := httptest.NewServer(telemetry.MetricsHandler(telemetry.NewRegistry("test", "v1"), "s3cret"))
	defer srv.Close()
	for auth, want := range map[string]int{"": 401, "Bearer nope": 401, "s3cret": 401, "Bearer s3cret": 200} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("Authorization %q: %d, want %d", auth, res.StatusCode, want)
		}
	}
}

func TestReady(t *testing.T) {
	gate := telemetry.NewGate("warming up")
	h := telemetry.Ready(
		telemetry.Check{Name: "ok", Fn: func(context.Context) error { return nil }},
		telemetry.Check{Name: "gate", Fn: gate.Check},
		telemetry.Check{Name: "slow", Fn: func(ctx context.Context) error { <-ctx.Done(); return errors.New("timed out") }},
	)
	call := func() (int, telemetry.ReadyAnswer) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ready", nil))
		var a telemetry.ReadyAnswer
		if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
			t.Fatal(err)
		}
		return rec.Code, a
	}
	start := time.Now()
	code, a := call()
	if code != 503 || a.Status != "not ready" || a.Checks["ok"] != "ok" || a.Checks["gate"] != "warming up" || a.Checks["slow"] != "timed out" {
		t.Fatalf("%d %+v", code, a)
	}
	// The slow check never ends on its own; the bound is generous for a slow machine.
	if d := time.Since(start); d > telemetry.ProbeTimeout+10*time.Second {
		t.Errorf("checks took %v", d)
	}
	gate.Open()
	h = telemetry.Ready(telemetry.Check{Name: "gate", Fn: gate.Check})
	if code, a := call(); code != 200 || a.Status != "ready" {
		t.Fatalf("%d %+v", code, a)
	}
	if telemetry.StatusClass(101) != "1xx" || telemetry.StatusClass(503) != "5xx" || telemetry.StatusClass(42) != "other" {
		t.Error("StatusClass")
	}
}
