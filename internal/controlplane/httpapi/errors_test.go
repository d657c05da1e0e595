package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wrenn/wrenn/internal/apierr"
)

func TestErrors(t *testing.T) {
	h := Errors(func(w http.ResponseWriter, r *http.Request) error {
		if r.URL.Query().Get("fail") != "" {
			return apierr.Forbidden("not yours")
		}
		NoContent(w)
		return nil
	})
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest("GET", "/x?fail=1", nil))
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "not yours") {
		t.Fatalf("error answer: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h(rec, httptest.NewRequest("GET", "/x", nil))
	if rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
		t.Fatalf("success answer: %d %s", rec.Code, rec.Body)
	}
}
