package capsules_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/portproxy"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

// agentTransports reaches the test's one agent over plain HTTP.
type agentTransports struct{ addr string }

func (a agentTransports) Transport(context.Context, uuid.UUID) (string, http.RoundTripper, error) {
	return "http://" + a.addr, http.DefaultTransport, nil
}

// TestEnvdAccessToken: every capsule gets its own envd access token (docs/security.md), sealed in the
// database, shown to its team and admins only; envd and the port proxy require it, across pause and
// resume and for capsules started from a snapshot template.
func TestEnvdAccessToken(t *testing.T) {
	f := newFixture(t, true)
	key := cptest.Key(f.alice.APIKey)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	c := f.create(t, key, map[string]any{"template": "minimal", "memory_mb": 256})
	raw, err := base64.RawURLEncoding.DecodeString(c.EnvdAccessToken)
	if err != nil || len(raw) < 32 {
		t.Fatalf("envd_access_token %q: %d bytes, %v", c.EnvdAccessToken, len(raw), err)
	}
	other := f.create(t, key, map[string]any{"template": "minimal", "memory_mb": 256})
	if other.EnvdAccessToken == "" || other.EnvdAccessToken == c.EnvdAccessToken {
		t.Fatalf("two capsules' tokens: %q %q", c.EnvdAccessToken, other.EnvdAccessToken)
	}

	// Sealed at rest.
	u, _ := ids.Capsule.Parse(c.ID)
	var sealed []byte
	if err := f.env.Store.Pool().QueryRow(ctx, `SELECT envd_token FROM capsules WHERE id = $1`, u).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if len(sealed) == 0 || bytes.Contains(sealed, []byte(c.EnvdAccessToken)) || bytes.Contains(sealed, raw) {
		t.Fatalf("envd_token column is not sealed: %x", sealed)
	}

	// The owning team sees it in get and list; other teams do not see the capsule.
	if got := f.get(t, key, c.ID); got.EnvdAccessToken != c.EnvdAccessToken {
		t.Errorf("get: token %q, want the created one", got.EnvdAccessToken)
	}
	var list []capsules.Capsule
	f.do(t, http.StatusOK, http.MethodGet, "/v1/capsules", key, nil).JSON(t, &list)
	for _, l := range list {
		if (l.ID == c.ID && l.EnvdAccessToken != c.EnvdAccessToken) || (l.ID == other.ID && l.EnvdAccessToken != other.EnvdAccessToken) {
			t.Errorf("list: %s has token %q", l.ID, l.EnvdAccessToken)
		}
	}
	bobRes := f.do(t, http.StatusOK, http.MethodGet, "/v1/capsules", cptest.Key(f.bob.APIKey), nil)
	if bytes.Contains(bobRes.Body, []byte(c.EnvdAccessToken)) {
		t.Error("another team's listing shows the token")
	}
	f.wantError(t, http.StatusNotFound, "not_found", "", http.MethodGet, "/v1/capsules/"+c.ID, cptest.Key(f.bob.APIKey), nil)

	// The port proxy in front of the agent.
	proxy, err := portproxy.New(portproxy.Config{
		Store: f.env.Store, Transports: agentTransports{f.agent.Addr}, Tokens: f.svc, Domain: "wrenn.test",
		Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(proxy.Middleware(http.NotFoundHandler()))
	defer front.Close()

	status := func(url, host, tok string) int {
		t.Helper()
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		defer rcancel()
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
		if host != "" {
			req.Host = host
		}
		if tok != "" {
			req.Header.Set("X-Access-Token", tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	check := func(when string, c capsules.Capsule) {
		t.Helper()
		envd := "http://" + net.JoinHostPort(c.HostIP, "49983")
		host := "49983-" + c.ID + ".wrenn.test"
		for _, tc := range []struct {
			name, url, host, tok string
			want                 int
		}{
			{"envd without token", envd + "/envs", "", "", 401},
			{"envd with another capsule's token", envd + "/envs", "", other.EnvdAccessToken, 401},
			{"envd with token", envd + "/envs", "", c.EnvdAccessToken, 200},
			{"proxy without token", front.URL + "/health", host, "", 401},
			{"proxy with another capsule's token", front.URL + "/envs", host, other.EnvdAccessToken, 401},
			{"proxy with token", front.URL + "/envs", host, c.EnvdAccessToken, 200},
		} {
			if got := status(tc.url, tc.host, tc.tok); got != tc.want {
				t.Errorf("%s: %s: %d, want %d", when, tc.name, got, tc.want)
			}
		}
		if out := f.exec(t, c.ID, "echo ok"); out != "ok" {
			t.Errorf("%s: agent exec: %q", when, out)
		}
	}
	check("after create", c)

	// Pause and resume: the same token.
	f.do(t, http.StatusOK, http.MethodPost, "/v1/capsules/"+c.ID+"/pause", key, nil)
	var resumed capsules.Capsule
	f.do(t, http.StatusOK, http.MethodPost, "/v1/capsules/"+c.ID+"/resume", key, nil).JSON(t, &resumed)
	if resumed.EnvdAccessToken != c.EnvdAccessToken {
		t.Fatalf("token changed by resume: %q", resumed.EnvdAccessToken)
	}
	check("after resume", resumed)

	// A capsule from a snapshot template gets its own token; the template's old one no longer works.
	f.do(t, http.StatusCreated, http.MethodPost, "/v1/snapshots", key, map[string]any{"capsule_id": c.ID, "name": "tok-snap"})
	fromTpl := f.create(t, key, map[string]any{"template": "tok-snap"})
	if fromTpl.EnvdAccessToken == "" || fromTpl.EnvdAccessToken == c.EnvdAccessToken {
		t.Fatalf("token of a capsule from a template: %q", fromTpl.EnvdAccessToken)
	}
	check("from template", fromTpl)
	if got := status("http://"+net.JoinHostPort(fromTpl.HostIP, "49983")+"/envs", "", c.EnvdAccessToken); got != 401 {
		t.Errorf("the template's token opens the new capsule's envd: %d", got)
	}

	// An admin sees the token of a platform capsule.
	admin := cptest.Bearer(f.admin.JWT)
	var pc, got capsules.Capsule
	f.do(t, http.StatusCreated, http.MethodPost, "/v1/admin/capsules", admin, map[string]any{"template": "minimal"}).JSON(t, &pc)
	f.do(t, http.StatusOK, http.MethodGet, "/v1/admin/capsules/"+pc.ID, admin, nil).JSON(t, &got)
	if pc.EnvdAccessToken == "" || got.EnvdAccessToken != pc.EnvdAccessToken {
		t.Errorf("admin views: %q, %q", pc.EnvdAccessToken, got.EnvdAccessToken)
	}
}
