package channels_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/audit"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/channels"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

func actorOf(a cptest.Account) auth.Identity {
	return auth.Identity{Method: auth.MethodJWT, UserID: a.UserID, Name: "Alice", TeamID: a.TeamID, Role: auth.RoleOwner}
}

// waitJobs waits until the notify queue has done jobs done and nothing pending or running.
func waitJobs(t *testing.T, e env, done int64, timeout time.Duration) db.CountJobsByStatusRow {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := e.Store.CountJobsByStatus(context.Background(), audit.NotifyQueue)
		if err != nil {
			t.Fatal(err)
		}
		if c.Done == done && c.Pending == 0 && c.Running == 0 {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs %+v, want %d done", c, done)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWebhookDelivery(t *testing.T) {
	e := setup(t, true, nil)
	a := e.NewAccount(t, "alice", false)
	rec := newRecorder(t)
	hook := create(t, e, a.JWT, map[string]any{"name": "hook", "provider": "webhook",
		"config": map[string]any{"url": rec.srv.URL + "/hook?x=1"}, "events": []string{"capsule.created"}})
	q := e.Store.Queries
	ctx := context.Background()

	// Not delivered: an event the channel does not subscribe to, a failed action, an unmapped action.
	audit.Record(ctx, q, audit.Entry{Team: a.Team, Actor: actorOf(a), ResourceType: "capsule", ResourceID: "cl-x", Action: "capsule.pause"})
	audit.Record(ctx, q, audit.Entry{Team: a.Team, Actor: actorOf(a), ResourceType: "capsule", ResourceID: "cl-x", Action: "capsule.create", Failed: true})
	audit.Record(ctx, q, audit.Entry{Team: a.Team, Actor: actorOf(a), ResourceType: "api_key", Action: "api_key.create", Scope: audit.ScopeAdmin})

	start := time.Now()
	audit.Record(ctx, q, audit.Entry{Team: a.Team, Actor: actorOf(a), ResourceType: "capsule", ResourceID: "cl-0k4xq2m9d8e7r6t5y4u3i2o1p", Action: "capsule.create"})
	req := rec.wait(t, 1, 30*time.Second)
	t.Logf("delivered %v after Record", time.Since(start))

	if req.Method != "POST" || req.Path != "/hook" || req.Header.Get("Content-Type") != "application/json" {
		t.Errorf("request %s %s %v", req.Method, req.Path, req.Header)
	}
	checkSignature(t, hook.Secret, req)
	if _, err := uuid.Parse(req.Header.Get(channels.HeaderDelivery)); err != nil {
		t.Errorf("delivery id %q: %v", req.Header.Get(channels.HeaderDelivery), err)
	}
	body := decode(t, req.Body)
	if len(body) != 5 || body["event"] != "capsule.created" || body["team_id"] != a.TeamID {
		t.Errorf("payload %s", req.Body)
	}
	if ts, ok := body["timestamp"].(string); !ok || !strings.HasSuffix(ts, "Z") {
		t.Errorf("timestamp %v", body["timestamp"])
	} else if at, err := time.Parse(time.RFC3339, ts); err != nil || time.Since(at) > time.Minute {
		t.Errorf("timestamp %q: %v", ts, err)
	}
	actor, _ := body["actor"].(map[string]any)
	if actor["type"] != "user" || actor["id"] != a.UserID || actor["name"] != "Alice" {
		t.Errorf("actor %v", actor)
	}
	res, _ := body["resource"].(map[string]any)
	if res["type"] != "capsule" || res["id"] != "cl-0k4xq2m9d8e7r6t5y4u3i2o1p" {
		t.Errorf("resource %v", res)
	}
	waitJobs(t, e, 1, 30*time.Second)
	// A negative check: no second request may come during this window; a
	// slow machine can only make it pass.
	time.Sleep(200 * time.Millisecond)
	if n := rec.count(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestRetryUntilSuccess(t *testing.T) {
	e := setup(t, true, nil) // RetryBase 100 ms
	a := e.NewAccount(t, "retry", false)
	rec := newRecorder(t, 500, 302, 503) // a redirect is not followed: a failure like any non-2xx
	hook := create(t, e, a.JWT, map[string]any{"name": "hook", "provider": "webhook",
		"config": map[string]any{"url": rec.srv.URL + "/flaky", "secret": "s3cret"}, "events": []string{"host.down"}})
	audit.Record(context.Background(), e.Store.Queries, audit.Entry{Team: a.Team, ResourceType: "host", ResourceID: "host-1", Action: "host.down", Scope: audit.ScopeAdmin})

	last := rec.wait(t, 4, 30*time.Second)
	waitJobs(t, e, 1, 30*time.Second)
	if hook.Secret != "s3cret" {
		t.Errorf("secret %q", hook.Secret)
	}
	checkSignature(t, "s3cret", last)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	ids := map[string]bool{}
	for _, r := range rec.reqs {
		ids[r.Header.Get(channels.HeaderDelivery)] = true
		if r.Path != "/flaky" {
			t.Errorf("request to %s", r.Path)
		}
	}
	if len(ids) != 1 || len(rec.reqs) != 4 {
		t.Errorf("%d requests with delivery ids %v", len(rec.reqs), ids)
	}
	body := decode(t, last.Body)
	if actor, _ := body["actor"].(map[string]any); len(actor) != 1 || actor["type"] != "system" {
		t.Errorf("system actor %v", body["actor"])
	}
}

func TestChatProviders(t *testing.T) {
	rec := newRecorder(t)
	e := setup(t, true, func(c *channels.Config) { c.TelegramAPIURL = rec.srv.URL + "/tg/" })
	a := e.NewAccount(t, "chat", false)
	ev := []string{"template.snapshot.created"}
	for _, c := range []map[string]any{
		{"name": "d", "provider": "discord", "config": map[string]any{"webhook_url": rec.srv.URL + "/discord"}},
		{"name": "s", "provider": "slack", "config": map[string]any{"webhook_url": rec.srv.URL + "/slack"}},
		{"name": "t", "provider": "teams", "config": map[string]any{"webhook_url": rec.srv.URL + "/teams"}},
		{"name": "g", "provider": "googlechat", "config": map[string]any{"webhook_url": rec.srv.URL + "/gchat"}},
		{"name": "tg", "provider": "telegram", "config": map[string]any{"bot_token": "123:ABC", "chat_id": "-1001"}},
		{"name": "m", "provider": "matrix", "config": map[string]any{"homeserver_url": rec.srv.URL + "/mx/", "access_token": "mxtok", "room_id": "!room:mx.test"}},
	} {
		c["events"] = ev
		create(t, e, a.JWT, c)
	}
	audit.Record(context.Background(), e.Store.Queries, audit.Entry{Team: a.Team, Actor: actorOf(a), ResourceType: "template",
		ResourceID: "snap-1", Action: "template.snapshot"})
	rec.wait(t, 6, 30*time.Second)
	waitJobs(t, e, 6, 30*time.Second)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	byPath := map[string]recorded{}
	for _, r := range rec.reqs {
		byPath[r.Path] = r
	}
	text := func(path, field string) string {
		t.Helper()
		r, ok := byPath[path]
		if !ok {
			t.Fatalf("no request to %s; got %v", path, slices.Collect(func(yield func(string) bool) {
				for p := range byPath {
					if !yield(p) {
						return
					}
				}
			}))
		}
		s, _ := decode(t, r.Body)[field].(string)
		if !strings.Contains(s, "template.snapshot.created") || !strings.Contains(s, "snap-1") || !strings.Contains(s, "Alice") {
			t.Errorf("%s %s = %q", path, field, s)
		}
		return s
	}
	text("/discord", "content")
	text("/slack", "text")
	text("/teams", "text")
	text("/gchat", "text")
	text("/tg/bot123:ABC/sendMessage", "text")
	if got := decode(t, byPath["/tg/bot123:ABC/sendMessage"].Body)["chat_id"]; got != "-1001" {
		t.Errorf("telegram chat_id %v", got)
	}
	var mx recorded
	for p, r := range byPath {
		if strings.HasPrefix(p, "/mx/_matrix/client/v3/rooms/") {
			mx = r
			if !strings.Contains(p, "/send/m.room.message/") || !strings.Contains(p, "room") {
				t.Errorf("matrix path %s", p)
			}
		}
	}
	if mx.Method != "PUT" || mx.Header.Get("Authorization") != "Bearer mxtok" {
		t.Fatalf("matrix request %+v", mx)
	}
	if m := decode(t, mx.Body); m["msgtype"] != "m.text" || !strings.Contains(m["body"].(string), "template.snapshot.created") {
		t.Errorf("matrix body %s", mx.Body)
	}
}

func TestDroppedWhenChannelGone(t *testing.T) {
	e := setup(t, false, nil)
	a := e.NewAccount(t, "gone", false)
	rec := newRecorder(t)
	gone := create(t, e, a.JWT, map[string]any{"name": "gone", "provider": "webhook",
		"config": map[string]any{"url": rec.srv.URL + "/gone"}, "events": []string{"capsule.destroyed"}})
	unsub := create(t, e, a.JWT, map[string]any{"name": "unsub", "provider": "webhook",
		"config": map[string]any{"url": rec.srv.URL + "/unsub"}, "events": []string{"capsule.destroyed"}})
	audit.Record(context.Background(), e.Store.Queries, audit.Entry{Team: a.Team, Actor: actorOf(a), ResourceType: "capsule", Action: "capsule.destroy"})
	if res := e.Do(t, "DELETE", "/v1/channels/"+gone.ID, cptest.Bearer(a.JWT), nil); res.Status != 204 {
		t.Fatalf("delete: %d %s", res.Status, res.Body)
	}
	if res := e.Do(t, "PATCH", "/v1/channels/"+unsub.ID, cptest.Bearer(a.JWT), map[string]any{"events": []string{"host.up"}}); res.Status != 200 {
		t.Fatalf("unsubscribe: %d %s", res.Status, res.Body)
	}
	startRun(t, e.svc)
	waitJobs(t, e, 2, 30*time.Second)
	if n := rec.count(); n != 0 {
		t.Errorf("%d requests to deleted/unsubscribed channels", n)
	}
}

func TestTestEndpoint(t *testing.T) {
	e := setup(t, false, nil)
	a := e.NewAccount(t, "tester", false)
	rec := newRecorder(t, 200, 200, 500)

	res := e.Do(t, "POST", "/v1/channels/test", cptest.Bearer(a.JWT), map[string]any{"provider": "webhook",
		"config": map[string]any{"url": rec.srv.URL + "/test", "secret": "shh"}})
	if res.Status != 200 || strings.TrimSpace(string(res.Body)) != `{"status":"ok"}` {
		t.Fatalf("test webhook: %d %s", res.Status, res.Body)
	}
	req := rec.wait(t, 1, 30*time.Second)
	checkSignature(t, "shh", req)
	body := decode(t, req.Body)
	if body["event"] != channels.TestEvent || body["team_id"] != a.TeamID || req.Path != "/test" {
		t.Errorf("test payload %s to %s", req.Body, req.Path)
	}

	res = e.Do(t, "POST", "/v1/channels/test", cptest.Bearer(a.JWT), map[string]any{"provider": "slack",
		"config": map[string]any{"webhook_url": rec.srv.URL + "/slack-test"}})
	if res.Status != 200 {
		t.Fatalf("test slack: %d %s", res.Status, res.Body)
	}
	if r := rec.wait(t, 2, 30*time.Second); r.Path != "/slack-test" || decode(t, r.Body)["text"] == "" {
		t.Errorf("slack test %s %s", r.Path, r.Body)
	}

	res = e.Do(t, "POST", "/v1/channels/test", cptest.Bearer(a.JWT), map[string]any{"provider": "discord",
		"config": map[string]any{"webhook_url": rec.srv.URL + "/secret-path-token"}})
	if res.Status != 400 || !strings.Contains(string(res.Body), "test message failed") || !strings.Contains(string(res.Body), "500") ||
		strings.Contains(string(res.Body), "secret-path-token") || strings.Contains(string(res.Body), `\"ok\"`) {
		t.Errorf("failing endpoint: %d %s", res.Status, res.Body)
	}
	res = e.Do(t, "POST", "/v1/channels/test", cptest.Bearer(a.JWT), map[string]any{"provider": "telegram", "config": map[string]any{"chat_id": "1"}})
	if res.Status != 400 || !strings.Contains(string(res.Body), "config.bot_token is required") {
		t.Errorf("invalid config: %d %s", res.Status, res.Body)
	}
	// Unreachable endpoint: a 400 without the URL.
	closed := newRecorder(t)
	closed.srv.Close()
	res = e.Do(t, "POST", "/v1/channels/test", cptest.Bearer(a.JWT), map[string]any{"provider": "webhook", "config": map[string]any{"url": closed.srv.URL + "/tok"}})
	if res.Status != 400 || strings.Contains(string(res.Body), "/tok") {
		t.Errorf("unreachable: %d %s", res.Status, res.Body)
	}
	// Tests create nothing.
	var list []channel
	e.Do(t, "GET", "/v1/channels", cptest.Bearer(a.JWT), nil).JSON(t, &list)
	if len(list) != 0 {
		t.Errorf("test created channels: %+v", list)
	}
}
