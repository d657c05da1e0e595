package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wrenn/wrenn/internal/apierr"
)

// Every request, routed or not, gets its own id in X-Request-Id and in the context.
func TestRouterRequestID(t *testing.T) {
	rt := NewRouter(nil)
	var seen string
	rt.Handle(http.MethodGet, "/health", KindNone, func(w http.ResponseWriter, r *http.Request) {
		seen = apierr.RequestID(r.Context())
	})
	ids := map[string]bool{}
	for _, target := range []string{"/health", "/health", "/nowhere"} {
		rec := httptest.NewRecorder()
		rt.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		id := rec.Header().Get(RequestIDHeader)
		if !strings.HasPrefix(id, "req-") || len(id) != len("req-")+26 || ids[id] {
			t.Fatalf("%s: request id %q (seen %v)", target, id, ids)
		}
		ids[id] = true
		if target == "/health" && seen != id {
			t.Fatalf("handler saw request id %q, header %q", seen, id)
		}
	}
}
