package e2bapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/api/hostagent/hostagent/v1/hostagentv1connect"
	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/controlplane/e2bapi"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// noAgents reaches no host; noHosts places nothing: the handlers run without a host agent.
type noAgents struct{}

func (noAgents) Agent(context.Context, uuid.UUID) (hostagentv1connect.HostAgentServiceClient, error) {
	return nil, apierr.HostUnavailable("sandbox host is not reachable")
}

type noHosts struct{}

func (noHosts) Pick(context.Context, uuid.UUID, int32, int32, ...uuid.UUID) (db.Host, error) {
	return db.Host{}, apierr.NoCapacity("no online host can fit the capsule")
}

type fixture struct {
	env  *cptest.Env
	srv  *httptest.Server
	team cptest.Account
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	env := cptest.New(t)
	caps, err := capsules.New(capsules.Config{Store: env.Store, Agents: noAgents{}, Scheduler: noHosts{}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := e2bapi.New(e2bapi.Config{Capsules: caps, Authn: env.Authn, Domain: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &fixture{env: env, srv: srv, team: env.NewAccount(t, "Alice", false)}
}

// capsule inserts a capsule row of the fixture's team in status with E2B metadata.
func (f *fixture) capsule(t *testing.T, status string, meta map[string]string) string {
	t.Helper()
	ctx := context.Background()
	c, err := f.env.Store.CreateCapsule(ctx, db.CreateCapsuleParams{TeamID: f.team.Team, TemplateName: "base",
		VCPUs: 1, MemoryMB: 512, DiskMB: 5120, DefaultUser: "user"})
	if err != nil {
		t.Fatal(err)
	}
	if status != store.CapsulePending {
		if _, err := f.env.Store.UpdateCapsuleStatus(ctx, db.UpdateCapsuleStatusParams{ID: c.ID, Status: status,
			FromStatuses: []string{store.CapsulePending}}); err != nil {
			t.Fatal(err)
		}
	}
	end := time.Now().Add(time.Hour)
	if _, err := f.env.Store.SetCapsuleLifetime(ctx, db.SetCapsuleLifetimeParams{UserMetadata: meta, EndAt: &end,
		OnTimeout: "kill", TeamID: f.team.Team, ID: c.ID}); err != nil {
		t.Fatal(err)
	}
	return e2bapi.SandboxID(c.ID)
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (f *fixture) call(t *testing.T, method, path, key, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-KEY", key)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{res.StatusCode, res.Header, b}
}

// wantError checks E2B's error body: code is the status.
func wantError(t *testing.T, a answer, status int, msg string) {
	t.Helper()
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if a.status != status || json.Unmarshal(a.body, &e) != nil || e.Code != status || !strings.Contains(e.Message, msg) {
		t.Fatalf("got %d %s; want %d with code %d and %q", a.status, a.body, status, status, msg)
	}
}

func TestAuthAndErrors(t *testing.T) {
	testutil.Integration(t)
	f := newFixture(t)
	wantError(t, f.call(t, "GET", "/v2/sandboxes", "", ""), 401, "missing credentials")
	wantError(t, f.call(t, "GET", "/v2/sandboxes", "wrn_"+strings.Repeat("0", 32), ""), 401, "invalid API key")
	wantError(t, f.call(t, "GET", "/sandboxes/nosuch", f.team.APIKey, ""), 404, "not found")
	wantError(t, f.call(t, "DELETE", "/sandboxes/0000000000000000000000000", f.team.APIKey, ""), 404, "not found")
	wantError(t, f.call(t, "POST", "/sandboxes/abc/fork", f.team.APIKey, "{}"), 501, "not supported by Wrenn")
	wantError(t, f.call(t, "POST", "/v2/sandboxes", f.team.APIKey, `{"templateID":"base","network":{"denyOut":["0.0.0.0/0"]}}`), 400, "network")
	wantError(t, f.call(t, "POST", "/v2/sandboxes", f.team.APIKey, `{"templateID":"base","timeout":999999}`), 400, "timeout")
	wantError(t, f.call(t, "POST", "/v2/sandboxes", f.team.APIKey, `{"templateID":"nope"}`), 404, "template not found")
	// No host: the capsules service's 503 in E2B's body.
	wantError(t, f.call(t, "POST", "/v2/sandboxes", f.team.APIKey, `{"templateID":"base"}`), 503, "no online host")
	// Nothing was left behind by the failed creates.
	a := f.call(t, "GET", "/v2/sandboxes", f.team.APIKey, "")
	if a.status != 200 || strings.TrimSpace(string(a.body)) != "[]" {
		t.Fatalf("list after failed creates: %d %s", a.status, a.body)
	}
}

func TestListGetTimeoutPause(t *testing.T) {
	testutil.Integration(t)
	f := newFixture(t)
	key := f.team.APIKey
	meta := map[string]string{"a b": "c&d=e"}
	run1 := f.capsule(t, store.CapsuleRunning, meta)
	run2 := f.capsule(t, store.CapsuleRunning, meta)
	paused := f.capsule(t, store.CapsulePaused, meta)
	f.capsule(t, store.CapsuleRunning, map[string]string{"a b": "other"})
	stopped := f.capsule(t, store.CapsuleStopped, meta)
	other := f.env.NewAccount(t, "Bob", false)

	// The SDK's encoding of {"a b":"c&d=e"}, one per page.
	seen := map[string]bool{}
	token := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		path := "/v2/sandboxes?metadata=a%252520b%3Dc%252526d%25253De&state=running&limit=1"
		if token != "" {
			path += "&nextToken=" + token
		}
		a := f.call(t, "GET", path, key, "")
		var items []struct {
			SandboxID string            `json:"sandboxID"`
			State     string            `json:"state"`
			Metadata  map[string]string `json:"metadata"`
		}
		if a.status != 200 || json.Unmarshal(a.body, &items) != nil || len(items) > 1 {
			t.Fatalf("list: %d %s", a.status, a.body)
		}
		for _, it := range items {
			if seen[it.SandboxID] || it.State != "running" || it.Metadata["a b"] != "c&d=e" {
				t.Fatalf("listed %+v (seen %v)", it, seen)
			}
			seen[it.SandboxID] = true
		}
		if token = a.header.Get(e2bapi.NextTokenHeader); token == "" {
			break
		}
	}
	if len(seen) != 2 || !seen[run1] || !seen[run2] {
		t.Fatalf("paged through %v, want %s and %s", seen, run1, run2)
	}
	a := f.call(t, "GET", "/v2/sandboxes?state=paused", key, "")
	if a.status != 200 || !strings.Contains(string(a.body), paused) || strings.Contains(string(a.body), run1) {
		t.Fatalf("paused list: %s", a.body)
	}
	// Another team sees none of them.
	if a := f.call(t, "GET", "/v2/sandboxes", other.APIKey, ""); strings.TrimSpace(string(a.body)) != "[]" {
		t.Fatalf("other team lists %s", a.body)
	}
	wantError(t, f.call(t, "GET", "/sandboxes/"+run1, other.APIKey, ""), 404, "not found")

	// Get: the detail, in both id forms; a stopped capsule is not found.
	for _, id := range []string{run1, "cl-" + strings.TrimPrefix(run1, "cl")} {
		a := f.call(t, "GET", "/sandboxes/"+id, key, "")
		var d struct {
			SandboxID, TemplateID, State, EnvdVersion, ClientID string
			EndAt                                               time.Time
			Domain                                              *string
		}
		if a.status != 200 || json.Unmarshal(a.body, &d) != nil || d.SandboxID != run1 || d.State != "running" ||
			d.TemplateID != "base" || d.EnvdVersion == "" || d.ClientID == "" || d.Domain == nil {
			t.Fatalf("get %s: %d %s", id, a.status, a.body)
		}
	}
	wantError(t, f.call(t, "GET", "/sandboxes/"+stopped, key, ""), 404, "not found")

	// setTimeout moves endAt to now + timeout.
	if a := f.call(t, "POST", "/sandboxes/"+run1+"/timeout", key, `{"timeout":30}`); a.status != 204 {
		t.Fatalf("timeout: %d %s", a.status, a.body)
	}
	var d struct{ EndAt time.Time }
	_ = json.Unmarshal(f.call(t, "GET", "/sandboxes/"+run1, key, "").body, &d)
	if d.EndAt.Before(time.Now().Add(10*time.Second)) || d.EndAt.After(time.Now().Add(40*time.Second)) {
		t.Fatalf("endAt %v after timeout 30 s", d.EndAt)
	}
	wantError(t, f.call(t, "POST", "/sandboxes/"+run1+"/timeout", key, `{}`), 400, "timeout is required")

	// Pause of a paused sandbox: 409 (the SDK's false); of a stopped one 404.
	wantError(t, f.call(t, "POST", "/sandboxes/"+paused+"/pause", key, `{}`), 409, "not running")
	wantError(t, f.call(t, "POST", "/sandboxes/"+stopped+"/pause", key, `{}`), 404, "not found")
	wantError(t, f.call(t, "POST", "/sandboxes/"+run1+"/pause", key, `{"memory":false}`), 400, "keepMemory")
}
