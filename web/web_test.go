package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDashboardClaimsOnlyItsRoutes(t *testing.T) {
	d := New()
	for _, p := range []string{"/", "/login", "/dashboard", "/dashboard/capsules/cl-1", "/admin/templates", "/activate", "/docs", "/auth/github/callback"} {
		if !d.Claims(p) {
			t.Errorf("Claims(%q) = false", p)
		}
	}
	for _, p := range []string{"/v1/capsules", "/health", "/metrics", "/ready", "/sandboxes", "/templates", "/openapi.yaml", "/dashboardx", "/nope", "/auth/oauth/github", "/auth/oauth/github/callback"} {
		if d.Claims(p) {
			t.Errorf("Claims(%q) = true", p)
		}
	}
}

func TestDashboardServesIndexForClientRoutes(t *testing.T) {
	d := New()
	rec := httptest.NewRecorder()
	d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/dashboard/capsules/cl-1", nil))
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	body := rec.Body.String()
	if Built() {
		if !strings.Contains(body, "_app/") {
			t.Fatalf("built index.html does not load the app:\n%s", body)
		}
	} else if !strings.Contains(body, "make build") {
		t.Fatalf("placeholder does not say how to build the dashboard:\n%s", body)
	}
}
