package channels_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/wrenn/wrenn/internal/controlplane/channels"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

// Deliveries to loopback are refused by default (after DNS resolution: "localhost" too) and reach
// the endpoint when the operator allows the range.
func TestLoopbackRefusedByDefault(t *testing.T) {
	e := setup(t, false, func(c *channels.Config) { c.AllowPrivate = false })
	a := e.NewAccount(t, "egress", false)
	rec := newRecorder(t)
	port := rec.srv.URL[strings.LastIndex(rec.srv.URL, ":"):]
	for _, u := range []string{rec.srv.URL + "/hook", "http://localhost" + port + "/hook"} {
		res := e.Do(t, "POST", "/v1/channels/test", cptest.Bearer(a.JWT), map[string]any{"provider": "webhook", "config": map[string]any{"url": u}})
		if res.Status != 400 || !strings.Contains(errMessage(t, res), "endpoint refused") || strings.Contains(string(res.Body), "127.0.0.1") {
			t.Errorf("webhook to %s: %d %s", u, res.Status, res.Body)
		}
	}
	if n := rec.count(); n != 0 {
		t.Fatalf("loopback endpoint received %d requests", n)
	}

	e = setup(t, false, func(c *channels.Config) {
		c.AllowPrivate = false
		c.AllowedNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	a = e.NewAccount(t, "egress-allowed", false)
	res := e.Do(t, "POST", "/v1/channels/test", cptest.Bearer(a.JWT), map[string]any{"provider": "webhook", "config": map[string]any{"url": rec.srv.URL + "/hook"}})
	if res.Status != 200 {
		t.Fatalf("allowed loopback: %d %s", res.Status, res.Body)
	}
	if rec.count() != 1 {
		t.Fatalf("allowed loopback endpoint received %d requests", rec.count())
	}
}

// A redirect is not followed: wherever it points (here loopback), the delivery fails with the
// status code alone and the target is never contacted.
func TestRedirectToLoopbackRefused(t *testing.T) {
	e := setup(t, false, nil)
	a := e.NewAccount(t, "redirect", false)
	target := newRecorder(t)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", target.srv.URL+"/internal")
		w.WriteHeader(http.StatusFound)
		_, _ = w.Write([]byte("internal secret"))
	}))
	t.Cleanup(redirector.Close)
	res := e.Do(t, "POST", "/v1/channels/test", cptest.Bearer(a.JWT), map[string]any{"provider": "webhook", "config": map[string]any{"url": redirector.URL}})
	if msg := errMessage(t, res); res.Status != 400 || !strings.HasSuffix(msg, "endpoint answered HTTP 302") || strings.Contains(msg, "secret") {
		t.Errorf("redirect: %d %s", res.Status, res.Body)
	}
	if target.count() != 0 {
		t.Error("redirect was followed")
	}
}
