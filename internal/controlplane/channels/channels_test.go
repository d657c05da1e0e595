package channels_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/controlplane/audit"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/channels"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

func TestMain(m *testing.M) { testutil.Main(m) }

var key = func() []byte { k := sha256.Sum256([]byte("channels test key")); return k[:] }()

type env struct {
	*cptest.Env
	svc *channels.Service
}

// setup registers the channel and audit routes; with run, the dispatcher runs until the test ends.
// Deliveries may reach loopback (the httptest endpoints) unless mod says otherwise.
func setup(t *testing.T, run bool, mod func(*channels.Config)) env {
	t.Helper()
	e := cptest.New(t)
	cfg := channels.Config{Store: e.Store, Secret: key, PollInterval: 50 * time.Millisecond, RetryBase: 100 * time.Millisecond,
		AllowPrivate: true}
	if mod != nil {
		mod(&cfg)
	}
	svc, err := channels.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc.Register(e.Router)
	a, err := audit.New(audit.Config{Store: e.Store})
	if err != nil {
		t.Fatal(err)
	}
	a.Register(e.Router)
	if run {
		startRun(t, svc)
	}
	return env{Env: e, svc: svc}
}

// startRun runs the dispatcher until the test ends.
func startRun(t *testing.T, svc *channels.Service) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return")
		}
	})
}

type channel struct {
	ID        string            `json:"id"`
	TeamID    string            `json:"team_id"`
	Name      string            `json:"name"`
	Provider  string            `json:"provider"`
	Events    []string          `json:"events"`
	Config    map[string]string `json:"config"`
	Secret    string            `json:"secret"`
	CreatedAt string            `json:"created_at"`
	UpdatedAt string            `json:"updated_at"`
}

func create(t *testing.T, e env, jwt string, body any) channel {
	t.Helper()
	res := e.Do(t, "POST", "/v1/channels", cptest.Bearer(jwt), body)
	if res.Status != 201 {
		t.Fatalf("create channel: %d %s", res.Status, res.Body)
	}
	var ch channel
	res.JSON(t, &ch)
	return ch
}

func TestValidation(t *testing.T) {
	e := setup(t, false, nil)
	a := e.NewAccount(t, "val", false)
	for _, tc := range []struct {
		body any
		want string // in the message
	}{
		{map[string]any{"provider": "slack", "config": map[string]any{"webhook_url": "https://x.test/h"}}, "name is required"},
		{map[string]any{"name": strings.Repeat("n", 129), "provider": "slack", "config": map[string]any{"webhook_url": "https://x.test/h"}}, "at most 128"},
		{map[string]any{"name": "n", "config": map[string]any{}}, "provider is required"},
		{map[string]any{"name": "n", "provider": "email", "config": map[string]any{}}, `invalid provider "email"`},
		{map[string]any{"name": "n", "provider": "slack"}, "config is required"},
		{map[string]any{"name": "n", "provider": "slack", "config": "x"}, "config must be a JSON object"},
		{map[string]any{"name": "n", "provider": "discord", "config": map[string]any{}}, "config.webhook_url is required"},
		{map[string]any{"name": "n", "provider": "teams", "config": map[string]any{"webhook_url": "  "}}, "config.webhook_url is required"},
		{map[string]any{"name": "n", "provider": "googlechat", "config": map[string]any{"webhook_url": "ftp://x"}}, "config.webhook_url must be an absolute http or https URL"},
		{map[string]any{"name": "n", "provider": "slack", "config": map[string]any{"webhook_url": true}}, "config.webhook_url must be a string"},
		{map[string]any{"name": "n", "provider": "telegram", "config": map[string]any{"chat_id": "1"}}, "config.bot_token is required"},
		{map[string]any{"name": "n", "provider": "telegram", "config": map[string]any{"bot_token": "1:a"}}, "config.chat_id is required"},
		{map[string]any{"name": "n", "provider": "matrix", "config": map[string]any{"access_token": "t", "room_id": "!r:x"}}, "config.homeserver_url is required"},
		{map[string]any{"name": "n", "provider": "matrix", "config": map[string]any{"homeserver_url": "https://m.test", "room_id": "!r:x"}}, "config.access_token is required"},
		{map[string]any{"name": "n", "provider": "matrix", "config": map[string]any{"homeserver_url": "https://m.test", "access_token": "t"}}, "config.room_id is required"},
		{map[string]any{"name": "n", "provider": "webhook", "config": map[string]any{"secret": "s"}}, "config.url is required"},
		{map[string]any{"name": "n", "provider": "webhook", "config": map[string]any{"url": "/relative"}}, "config.url must be an absolute"},
		{map[string]any{"name": "n", "provider": "webhook", "config": map[string]any{"url": "https://w.test"}, "events": []string{"capsule.exploded"}}, `invalid event "capsule.exploded"`},
		{`{"name":`, "invalid JSON body"},
	} {
		body := tc.body
		if s, ok := body.(string); ok {
			body = []byte(s)
		}
		res := e.Do(t, "POST", "/v1/channels", cptest.Bearer(a.JWT), body)
		if res.Status != 400 || res.ErrorCode() != "invalid_request" || !strings.Contains(errMessage(t, res), tc.want) {
			t.Errorf("%v: %d %s (want %q)", tc.body, res.Status, res.Body, tc.want)
		}
	}
	var list []channel
	res := e.Do(t, "GET", "/v1/channels", cptest.Bearer(a.JWT), nil)
	res.JSON(t, &list)
	if res.Status != 200 || len(list) != 0 {
		t.Errorf("bad requests created channels: %d %s", res.Status, res.Body)
	}
}

func TestCRUD(t *testing.T) {
	e := setup(t, false, nil)
	a := e.NewAccount(t, "crud", false)
	ctx := context.Background()

	hook := create(t, e, a.JWT, map[string]any{"name": " Ops hook ", "provider": "webhook",
		"config": map[string]any{"url": "https://hooks.test/wrenn", "ignored": "x"}, "events": []string{"capsule.created", "host.down", "capsule.created"}})
	if !strings.HasPrefix(hook.ID, "ch-") || hook.TeamID != a.TeamID || hook.Name != "Ops hook" || hook.Provider != "webhook" ||
		!slices.Equal(hook.Events, []string{"capsule.created", "host.down"}) || hook.Config != nil || hook.CreatedAt == "" {
		t.Errorf("created webhook = %+v", hook)
	}
	if len(hook.Secret) != 64 {
		t.Errorf("generated secret %q", hook.Secret)
	}
	given := create(t, e, a.JWT, map[string]any{"name": "given", "provider": "webhook",
		"config": map[string]any{"url": "http://127.0.0.1:1/x", "secret": "my-own-secret"}})
	if given.Secret != "my-own-secret" || given.Events == nil || len(given.Events) != 0 {
		t.Errorf("webhook with secret = %+v", given)
	}
	tg := create(t, e, a.JWT, map[string]any{"name": "tg", "provider": "telegram",
		"config": map[string]any{"bot_token": "123:SECRET-TOKEN", "chat_id": -100123}, "events": []string{"host.up"}})
	if tg.Secret != "" || tg.Config != nil {
		t.Errorf("telegram = %+v", tg)
	}
	slack := create(t, e, a.JWT, map[string]any{"name": "slack", "provider": "slack",
		"config": map[string]any{"webhook_url": "https://hooks.slack.test/services/SECRET-PATH"}})
	if slack.Config != nil || slack.Secret != "" {
		t.Errorf("slack = %+v", slack)
	}
	mx := create(t, e, a.JWT, map[string]any{"name": "mx", "provider": "matrix",
		"config": map[string]any{"homeserver_url": "https://matrix.test", "access_token": "SECRET-MX", "room_id": "!room:matrix.test"}})
	if mx.Config != nil || mx.Secret != "" {
		t.Errorf("matrix = %+v", mx)
	}

	// Reads never show credentials.
	secrets := []string{hook.Secret, "my-own-secret", "SECRET-TOKEN", "SECRET-PATH", "SECRET-MX", "hooks.test", "100123", `"config"`}
	noSecrets := func(what string, body []byte) {
		t.Helper()
		for _, s := range secrets {
			if bytes.Contains(body, []byte(s)) {
				t.Errorf("%s shows secret %q: %s", what, s, body)
			}
		}
	}
	res := e.Do(t, "GET", "/v1/channels", cptest.Bearer(a.JWT), nil)
	noSecrets("list", res.Body)
	var list []channel
	res.JSON(t, &list)
	if len(list) != 5 || list[0].ID != hook.ID || list[0].Secret != "" {
		t.Errorf("list = %+v", list)
	}
	res = e.Do(t, "GET", "/v1/channels/"+hook.ID, cptest.Bearer(a.JWT), nil)
	noSecrets("get", res.Body)
	var got channel
	res.JSON(t, &got)
	if res.Status != 200 || got.ID != hook.ID || got.Secret != "" || got.Name != "Ops hook" {
		t.Errorf("get = %d %+v", res.Status, got)
	}
	// Stored sealed.
	row, err := e.Store.GetChannelByID(ctx, mustParse(t, tg.ID))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(row.Config, []byte("SECRET-TOKEN")) || bytes.Contains(row.Config, []byte("100123")) {
		t.Errorf("config stored in clear: %q", row.Config)
	}

	// PATCH.
	res = e.Do(t, "PATCH", "/v1/channels/"+hook.ID, cptest.Bearer(a.JWT), map[string]any{"name": "renamed"})
	res.JSON(t, &got)
	if res.Status != 200 || got.Name != "renamed" || !slices.Equal(got.Events, []string{"capsule.created", "host.down"}) {
		t.Errorf("rename: %d %s", res.Status, res.Body)
	}
	res = e.Do(t, "PATCH", "/v1/channels/"+hook.ID, cptest.Bearer(a.JWT), map[string]any{"events": []string{}})
	res.JSON(t, &got)
	if res.Status != 200 || got.Name != "renamed" || len(got.Events) != 0 {
		t.Errorf("clear events: %d %s", res.Status, res.Body)
	}
	res = e.Do(t, "PATCH", "/v1/channels/"+hook.ID, cptest.Bearer(a.JWT), map[string]any{"events": []string{"template.snapshot.deleted"}, "name": "both"})
	res.JSON(t, &got)
	if res.Status != 200 || got.Name != "both" || !slices.Equal(got.Events, []string{"template.snapshot.deleted"}) {
		t.Errorf("patch both: %d %s", res.Status, res.Body)
	}
	noSecrets("patch", res.Body)
	for _, body := range []any{map[string]any{"name": ""}, map[string]any{"events": []string{"nope"}}, map[string]any{"events": "capsule.created"}} {
		if res := e.Do(t, "PATCH", "/v1/channels/"+hook.ID, cptest.Bearer(a.JWT), body); res.Status != 400 {
			t.Errorf("PATCH %v: %d %s", body, res.Status, res.Body)
		}
	}

	// PUT config rotates credentials; a webhook gets a new secret when none is given.
	res = e.Do(t, "PUT", "/v1/channels/"+hook.ID+"/config", cptest.Bearer(a.JWT), map[string]any{"config": map[string]any{"url": "https://hooks.test/v2"}})
	res.JSON(t, &got)
	if res.Status != 200 || len(got.Secret) != 64 || got.Secret == hook.Secret || got.Name != "both" {
		t.Errorf("rotate webhook: %d %s", res.Status, res.Body)
	}
	res = e.Do(t, "PUT", "/v1/channels/"+tg.ID+"/config", cptest.Bearer(a.JWT), map[string]any{"config": map[string]any{"chat_id": "42"}})
	if res.Status != 400 || !strings.Contains(string(res.Body), "config.bot_token is required for provider telegram") {
		t.Errorf("rotate telegram without token: %d %s", res.Status, res.Body)
	}
	res = e.Do(t, "PUT", "/v1/channels/"+tg.ID+"/config", cptest.Bearer(a.JWT), map[string]any{"config": map[string]any{"chat_id": "42", "bot_token": "9:NEW"}})
	got = channel{}
	res.JSON(t, &got)
	if res.Status != 200 || got.Secret != "" || bytes.Contains(res.Body, []byte("9:NEW")) {
		t.Errorf("rotate telegram: %d %s", res.Status, res.Body)
	}

	// Bad ids and deletion.
	for _, p := range []string{"/v1/channels/nope", "/v1/channels/" + a.TeamID} {
		if res := e.Do(t, "GET", p, cptest.Bearer(a.JWT), nil); res.Status != 400 || !strings.Contains(string(res.Body), "invalid channel ID") {
			t.Errorf("GET %s: %d %s", p, res.Status, res.Body)
		}
	}
	if res := e.Do(t, "DELETE", "/v1/channels/"+slack.ID, cptest.Bearer(a.JWT), nil); res.Status != 204 {
		t.Errorf("delete: %d %s", res.Status, res.Body)
	}
	for _, m := range []string{"GET", "DELETE"} {
		if res := e.Do(t, m, "/v1/channels/"+slack.ID, cptest.Bearer(a.JWT), nil); res.Status != 404 || res.ErrorCode() != "not_found" {
			t.Errorf("%s deleted: %d %s", m, res.Status, res.Body)
		}
	}

	// Audited with scope admin: create ×5, update ×3 (PATCH) + 2 (config), delete ×1.
	res = e.Do(t, "GET", "/v1/audit-logs?resource_type=channel&limit=200", cptest.Bearer(a.JWT), nil)
	var logs struct {
		Items []struct {
			Action     string `json:"action"`
			Scope      string `json:"scope"`
			ResourceID string `json:"resource_id"`
			ActorID    string `json:"actor_id"`
		} `json:"items"`
	}
	res.JSON(t, &logs)
	count := map[string]int{}
	for _, it := range logs.Items {
		count[it.Action]++
		if it.Scope != "admin" || !strings.HasPrefix(it.ResourceID, "ch-") || it.ActorID != a.UserID {
			t.Errorf("audit entry %+v", it)
		}
	}
	if count["channel.create"] != 5 || count["channel.update"] != 5 || count["channel.delete"] != 1 {
		t.Errorf("audit counts %v", count)
	}
	noSecrets("audit", res.Body)
}

func mustParse(t *testing.T, id string) [16]byte {
	t.Helper()
	u, err := ids.Channel.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestRolesAndTeams(t *testing.T) {
	e := setup(t, false, nil)
	owner := e.NewAccount(t, "owner", false)
	other := e.NewAccount(t, "other", false)
	ch := create(t, e, owner.JWT, map[string]any{"name": "c", "provider": "discord", "config": map[string]any{"webhook_url": "https://d.test/x"}})

	member := e.NewAccount(t, "member", false)
	e.AddMember(t, owner.Team, member.User, auth.RoleMember)
	mj := e.JWT(t, member.User, owner.Team, auth.RoleMember)
	if res := e.Do(t, "GET", "/v1/channels/"+ch.ID, cptest.Bearer(mj), nil); res.Status != 200 {
		t.Errorf("member get: %d %s", res.Status, res.Body)
	}
	if res := e.Do(t, "GET", "/v1/channels", cptest.Bearer(mj), nil); res.Status != 200 {
		t.Errorf("member list: %d %s", res.Status, res.Body)
	}
	body := map[string]any{"name": "c", "provider": "discord", "config": map[string]any{"webhook_url": "https://d.test/x"}}
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/v1/channels", body},
		{"PATCH", "/v1/channels/" + ch.ID, map[string]any{"name": "x"}},
		{"PUT", "/v1/channels/" + ch.ID + "/config", map[string]any{"config": map[string]any{"webhook_url": "https://d.test/y"}}},
		{"DELETE", "/v1/channels/" + ch.ID, nil},
		{"POST", "/v1/channels/test", map[string]any{"provider": "discord", "config": map[string]any{"webhook_url": "https://d.test/y"}}},
	} {
		if res := e.Do(t, c.method, c.path, cptest.Bearer(mj), c.body); res.Status != 403 || res.ErrorCode() != "forbidden" {
			t.Errorf("member %s %s: %d %s", c.method, c.path, res.Status, res.Body)
		}
		// Another team's channel does not exist for it.
		if c.path != "/v1/channels" && c.path != "/v1/channels/test" {
			if res := e.Do(t, c.method, c.path, cptest.Bearer(other.JWT), c.body); res.Status != 404 || res.ErrorCode() != "not_found" {
				t.Errorf("other team %s %s: %d %s", c.method, c.path, res.Status, res.Body)
			}
		}
	}
	if res := e.Do(t, "GET", "/v1/channels/"+ch.ID, cptest.Bearer(other.JWT), nil); res.Status != 404 {
		t.Errorf("other team get: %d %s", res.Status, res.Body)
	}
	var list []channel
	e.Do(t, "GET", "/v1/channels", cptest.Bearer(other.JWT), nil).JSON(t, &list)
	if len(list) != 0 {
		t.Errorf("other team lists %+v", list)
	}

	admin := e.NewAccount(t, "admin", false)
	e.AddMember(t, owner.Team, admin.User, auth.RoleAdmin)
	aj := e.JWT(t, admin.User, owner.Team, auth.RoleAdmin)
	if res := e.Do(t, "PATCH", "/v1/channels/"+ch.ID, cptest.Bearer(aj), map[string]any{"name": "by admin"}); res.Status != 200 {
		t.Errorf("admin patch: %d %s", res.Status, res.Body)
	}
	if res := e.Do(t, "GET", "/v1/channels", cptest.Key(owner.APIKey), nil); res.Status != 401 {
		t.Errorf("API key: %d %s", res.Status, res.Body)
	}
	if res := e.Do(t, "GET", "/v1/channels", cptest.Bearer(e.JWT(t, owner.User, [16]byte{}, "")), nil); res.Status != 403 || res.ErrorCode() != "no_team" {
		t.Errorf("no team: %d %s", res.Status, res.Body)
	}
}

func TestNewRequiresKey(t *testing.T) {
	e := cptest.New(t)
	if _, err := channels.New(channels.Config{Store: e.Store, Secret: []byte("short")}); err == nil {
		t.Error("New accepted a 5-byte key")
	}
	if _, err := channels.New(channels.Config{Secret: key}); err == nil {
		t.Error("New accepted no store")
	}
}

// recorder is an httptest endpoint that keeps every request and answers with the next status of a
// script (200 once the script is used up).
type recorder struct {
	mu     sync.Mutex
	reqs   []recorded
	script []int
	got    chan struct{}
	srv    *httptest.Server
}

type recorded struct {
	Method, Path string
	Header       http.Header
	Body         []byte
}

func newRecorder(t *testing.T, script ...int) *recorder {
	rec := &recorder{script: script, got: make(chan struct{}, 100)}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, recorded{r.Method, r.URL.EscapedPath(), r.Header.Clone(), b})
		status := 200
		if len(rec.script) > 0 {
			status, rec.script = rec.script[0], rec.script[1:]
		}
		rec.mu.Unlock()
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"ok":true}`))
		rec.got <- struct{}{}
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

// wait returns the n-th request (from 1), failing after timeout.
func (r *recorder) wait(t *testing.T, n int, timeout time.Duration) recorded {
	t.Helper()
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		if len(r.reqs) >= n {
			req := r.reqs[n-1]
			r.mu.Unlock()
			return req
		}
		r.mu.Unlock()
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("request %d not received within %v", n, timeout)
		}
	}
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

func checkSignature(t *testing.T, secret string, req recorded) {
	t.Helper()
	ts := req.Header.Get(channels.HeaderTimestamp)
	if _, err := time.Parse(time.RFC3339, ts); err != nil {
		t.Errorf("timestamp header %q: %v", ts, err)
	}
	if got, want := req.Header.Get(channels.HeaderSignature), channels.Sign(secret, ts, req.Body); got != want || !strings.HasPrefix(got, "sha256=") {
		t.Errorf("signature %q, want %q", got, want)
	}
	sig, err := hex.DecodeString(strings.TrimPrefix(req.Header.Get(channels.HeaderSignature), "sha256="))
	if err != nil || len(sig) != sha256.Size {
		t.Errorf("signature not hex SHA-256: %q", req.Header.Get(channels.HeaderSignature))
	}
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return m
}

func errMessage(t *testing.T, res cptest.Response) string {
	t.Helper()
	var e struct {
		Error struct{ Message string } `json:"error"`
	}
	res.JSON(t, &e)
	return e.Error.Message
}
