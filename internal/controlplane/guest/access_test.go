package guest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

// guestCall is one HTTP guest route with a valid request.
type guestCall struct {
	method, sub string
	body        func(t *testing.T) any
}

func jsonBody(v any) func(*testing.T) any { return func(*testing.T) any { return v } }

// httpRoutes are every HTTP guest route (sub is appended to /v1/…/{id}).
var httpRoutes = []guestCall{
	{"POST", "/exec", jsonBody(map[string]any{"cmd": "touch", "args": []string{"/tmp/intruder"}})},
	{"POST", "/exec", jsonBody(map[string]any{"cmd": "sleep", "args": []string{"100"}, "background": true})},
	{"GET", "/processes", nil},
	{"GET", "/processes?include_exited=true", nil},
	{"DELETE", "/processes/1", nil},
	{"DELETE", "/processes/some-tag", nil},
	{"POST", "/files/read", jsonBody(map[string]string{"path": "/etc/hostname"})},
	{"POST", "/files/stream/read", jsonBody(map[string]string{"path": "/etc/hostname"})},
	{"POST", "/files/write", func(t *testing.T) any { return upload(t, "/tmp/intruder", []byte("x"), false) }},
	{"POST", "/files/stream/write", func(t *testing.T) any { return upload(t, "/tmp/intruder", []byte("x"), false) }},
	{"POST", "/files/list", jsonBody(map[string]string{"path": "/"})},
	{"POST", "/files/mkdir", jsonBody(map[string]string{"path": "/tmp/intruder-dir"})},
	{"POST", "/files/remove", jsonBody(map[string]string{"path": "/etc"})},
}

// wsRoutes are the WebSocket guest routes with a valid first protocol message.
var wsRoutes = []struct {
	sub   string
	first any
}{
	{"/exec/stream", map[string]any{"type": "start", "cmd": "touch", "args": []string{"/tmp/intruder"}}},
	{"/processes/1/stream", nil},
	{"/processes/some-tag/stream", nil},
	{"/pty", map[string]any{"type": "start", "cmd": "/bin/sh", "tag": "intruder"}},
}

func (c guestCall) do(t *testing.T, f *fixture, prefix string, cred cptest.Cred) cptest.Response {
	t.Helper()
	var body any
	if c.body != nil {
		body = c.body(t)
	}
	return f.env.Do(t, c.method, prefix+c.sub, cred, body)
}

// wsFatal dials a WebSocket route, sends first (if any) and returns the fatal error frame.
func wsFatal(t *testing.T, f *fixture, path string, cred cptest.Cred, first any) frame {
	t.Helper()
	c := mustDial(t, f, path, cred)
	if first != nil {
		c.send(first)
	}
	fr := c.next()
	if fr.Type != "error" || !fr.Fatal {
		t.Fatalf("%s: frame %+v, want a fatal error", path, fr)
	}
	return fr
}

func testTenantIsolation(t *testing.T, f *fixture) {
	for _, cred := range []cptest.Cred{cptest.Key(f.bob.APIKey), cptest.Bearer(f.bob.JWT)} {
		for _, prefix := range []string{"/v1/capsules/", "/v1/sandboxes/"} {
			base := prefix + f.capsule
			for _, r := range httpRoutes {
				res := r.do(t, f, base, cred)
				if res.Status != 404 || res.ErrorCode() != "not_found" || !strings.Contains(string(res.Body), "sandbox not found") {
					t.Errorf("%s %s as another team: %d %s", r.method, base+r.sub, res.Status, res.Body)
				}
			}
			for _, r := range wsRoutes {
				if fr := wsFatal(t, f, base+r.sub, cred, r.first); fr.Code != "not_found" || fr.Data != "sandbox not found" {
					t.Errorf("WS %s as another team: %+v", base+r.sub, fr)
				}
			}
		}
	}
	// Nothing happened in the capsule.
	if out := f.sh(t, "ls /tmp/intruder /tmp/intruder-dir 2>&1; ls -d /etc"); !strings.Contains(out, "No such file") || !strings.HasSuffix(out, "/etc\n") {
		t.Fatalf("capsule changed by another team: %q", out)
	}
	for _, p := range f.processes(t, true) {
		if p.Tag == "intruder" || (len(p.Args) == 1 && p.Args[0] == "100") {
			t.Fatalf("another team started %+v", p)
		}
	}
	// Another team's admin route: alice's capsule is not the platform's.
	for _, r := range httpRoutes {
		if strings.Contains(r.sub, "/stream/") {
			continue
		}
		if res := r.do(t, f, "/v1/admin/capsules/"+f.capsule, cptest.Bearer(f.admin.JWT)); res.Status != 404 || res.ErrorCode() != "not_found" {
			t.Errorf("admin %s on a team capsule: %d %s", r.sub, res.Status, res.Body)
		}
	}
	if fr := wsFatal(t, f, "/v1/admin/capsules/"+f.capsule+"/pty", cptest.Bearer(f.admin.JWT), nil); fr.Code != "not_found" {
		t.Errorf("admin pty on a team capsule: %+v", fr)
	}
}

func testWebSocketAuth(t *testing.T, f *fixture) {
	// First-message auth with an API key and with a JWT.
	for _, tok := range []string{f.alice.APIKey, f.alice.JWT} {
		c := mustDial(t, f, f.base()+"/exec/stream", cptest.Cred{})
		c.send(map[string]string{"type": "auth", "token": tok})
		c.send(map[string]any{"type": "start", "cmd": "echo", "args": []string{"authed"}})
		if fr := c.next(); fr.Type != "start" {
			t.Fatalf("after auth message: %+v", fr)
		}
		if out := c.collect("stdout", func(s string) bool { return s == "authed\n" }); out != "authed\n" {
			t.Fatalf("output %q", out)
		}
	}
	// First-message auth on the PTY, the process stream and an admin route.
	c := mustDial(t, f, f.base()+"/processes/no-such/stream", cptest.Cred{})
	c.send(map[string]string{"type": "auth", "token": f.alice.APIKey})
	c.expectFatal("not_found")
	c = mustDial(t, f, "/v1/admin/capsules/"+f.platform+"/pty", cptest.Cred{})
	c.send(map[string]string{"type": "auth", "token": f.admin.JWT})
	c.send(map[string]any{"type": "start", "cmd": "/bin/sh"})
	if fr := c.next(); fr.Type != "started" {
		t.Fatalf("admin PTY with an auth message: %+v", fr)
	}
	c.send(input("exit\n"))

	// Failures: fatal unauthorized "authentication failed".
	for name, first := range map[string]any{
		"bad token": map[string]string{"type": "auth", "token": "wrn_00000000000000000000000000000000"},
		"not auth":  map[string]any{"type": "start", "cmd": "true"},
		"not JSON":  "garbage",
	} {
		c := mustDial(t, f, f.base()+"/exec/stream", cptest.Cred{})
		c.send(first)
		if fr := c.expectFatal("unauthorized"); fr.Data != "authentication failed" {
			t.Errorf("%s: %+v", name, fr)
		}
	}
	// A non-admin token on an admin WebSocket.
	c = mustDial(t, f, "/v1/admin/capsules/"+f.platform+"/pty", cptest.Cred{})
	c.send(map[string]string{"type": "auth", "token": f.alice.JWT})
	c.expectFatal("unauthorized")

	// No auth message within 5 s.
	start := time.Now()
	c = mustDial(t, f, f.base()+"/pty", cptest.Cred{})
	if fr := c.expectFatal("unauthorized"); fr.Data != "authentication failed" {
		t.Fatalf("silent socket: %+v", fr)
	}
	// Only a lower bound: a slow machine answers later, never earlier; next's
	// read deadline bounds the wait.
	if d := time.Since(start); d < 4500*time.Millisecond {
		t.Fatalf("auth timeout after %s", d)
	}

	// Invalid header credentials: plain HTTP 401, no upgrade. Bad ids: plain 400.
	for _, sub := range []string{"/exec/stream", "/processes/x/stream", "/pty"} {
		if status, code := dialStatus(t, f, f.base()+sub, cptest.Key("wrn_00000000000000000000000000000000")); status != 401 || code != "unauthorized" {
			t.Errorf("%s with a bad key: %d %s", sub, status, code)
		}
		if status, code := dialStatus(t, f, "/v1/capsules/cl-nope"+sub, f.key()); status != 400 || code != "invalid_request" {
			t.Errorf("%s with a bad id: %d %s", sub, status, code)
		}
	}
	if status, _ := dialStatus(t, f, "/v1/admin/capsules/"+f.platform+"/pty", cptest.Bearer(f.alice.JWT)); status != 403 {
		t.Errorf("admin WS with a non-admin JWT header: %d", status)
	}
	if status, _ := dialStatus(t, f, "/v1/admin/capsules/"+f.platform+"/pty", cptest.Key(f.admin.APIKey)); status != 401 {
		t.Errorf("admin WS with an API key: %d", status)
	}
}

func testPreconditions(t *testing.T, f *fixture) {
	ctx := context.Background()
	// Step 1: a bad id → 400 "invalid sandbox ID" on every route.
	for _, r := range httpRoutes {
		res := r.do(t, f, "/v1/capsules/cl-bad", f.key())
		wantError(t, res, 400, "invalid_request", "invalid sandbox ID")
	}
	// Step 2: unknown capsule → 404.
	_, unknown := ids.Capsule.New()
	wantError(t, httpRoutes[0].do(t, f, "/v1/capsules/"+unknown, f.key()), 404, "not_found", "sandbox not found")
	if fr := wsFatal(t, f, "/v1/capsules/"+unknown+"/pty", f.key(), nil); fr.Code != "not_found" {
		t.Fatalf("unknown capsule PTY: %+v", fr)
	}

	// Step 3: not running → 409 invalid_state (HTTP and WebSocket).
	row, err := f.env.Store.CreateCapsule(ctx, db.CreateCapsuleParams{TeamID: f.alice.Team, TemplateName: "minimal", HostID: &f.hostID, VCPUs: 1, MemoryMB: 256, DiskMB: 1024, DefaultUser: "root"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.env.Store.SetCapsuleRunning(ctx, db.SetCapsuleRunningParams{ID: row.ID, HostID: &f.hostID, FromStatuses: []string{"pending"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.env.Store.MarkCapsulePaused(ctx, db.MarkCapsulePausedParams{ID: row.ID, FromStatuses: []string{"running"}}); err != nil {
		t.Fatal(err)
	}
	paused := "/v1/capsules/" + ids.Capsule.Format(row.ID)
	for _, r := range httpRoutes {
		wantError(t, r.do(t, f, paused, f.key()), 409, "invalid_state", "sandbox is not running (status: paused)")
	}
	for _, r := range wsRoutes {
		if fr := wsFatal(t, f, paused+r.sub, f.key(), r.first); fr.Code != "invalid_state" {
			t.Errorf("WS %s on a paused capsule: %+v", r.sub, fr)
		}
	}

	// Step 4: running without a host → 503 host_unavailable.
	row, err = f.env.Store.CreateCapsule(ctx, db.CreateCapsuleParams{TeamID: f.alice.Team, TemplateName: "minimal", VCPUs: 1, MemoryMB: 256, DiskMB: 1024, DefaultUser: "root"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.env.Store.UpdateCapsuleStatus(ctx, db.UpdateCapsuleStatusParams{ID: row.ID, Status: "running", FromStatuses: []string{"pending"}}); err != nil {
		t.Fatal(err)
	}
	hostless := "/v1/capsules/" + ids.Capsule.Format(row.ID)
	wantError(t, httpRoutes[0].do(t, f, hostless, f.key()), 503, "host_unavailable", "sandbox host is not reachable")
	if fr := wsFatal(t, f, hostless+"/pty", f.key(), nil); fr.Code != "host_unavailable" {
		t.Fatalf("hostless PTY: %+v", fr)
	}

	// Step 5: the agent does not know the capsule → its not found.
	row, err = f.env.Store.CreateCapsule(ctx, db.CreateCapsuleParams{TeamID: f.alice.Team, TemplateName: "minimal", HostID: &f.hostID, VCPUs: 1, MemoryMB: 256, DiskMB: 1024, DefaultUser: "root"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.env.Store.SetCapsuleRunning(ctx, db.SetCapsuleRunningParams{ID: row.ID, HostID: &f.hostID, FromStatuses: []string{"pending"}}); err != nil {
		t.Fatal(err)
	}
	ghost := "/v1/capsules/" + ids.Capsule.Format(row.ID)
	for _, r := range httpRoutes {
		if res := r.do(t, f, ghost, f.key()); res.Status != 404 || res.ErrorCode() != "not_found" {
			t.Errorf("%s %s on a capsule the agent lacks: %d %s", r.method, r.sub, res.Status, res.Body)
		}
	}
	if fr := wsFatal(t, f, ghost+"/exec/stream", f.key(), wsRoutes[0].first); fr.Code != "not_found" {
		t.Errorf("exec stream on a capsule the agent lacks: %+v", fr)
	}

	// Credentials.
	res := f.env.Do(t, "POST", f.base()+"/exec", cptest.Cred{}, map[string]any{"cmd": "true"})
	wantError(t, res, 401, "unauthorized", "")
	res = f.env.Do(t, "POST", "/v1/admin/capsules/"+f.platform+"/exec", cptest.Bearer(f.alice.JWT), map[string]any{"cmd": "true"})
	wantError(t, res, 403, "forbidden", "admin access required")
	res = f.env.Do(t, "POST", "/v1/admin/capsules/"+f.platform+"/exec", cptest.Key(f.admin.APIKey), map[string]any{"cmd": "true"})
	wantError(t, res, 401, "unauthorized", "")
	// Wrong method → 405.
	wantError(t, f.env.Do(t, "GET", f.base()+"/exec", f.key(), nil), 405, "method_not_allowed", "")
}

func testAdmin(t *testing.T, f *fixture) {
	admin := cptest.Bearer(f.admin.JWT)
	base := "/v1/admin/capsules/" + f.platform
	// exec runs as the platform capsule's default user ("user").
	res := f.do(t, "POST", base+"/exec", admin, map[string]any{"cmd": "/bin/sh", "args": []string{"-c", "id -un; pwd"}}, 200)
	var r execResult
	res.JSON(t, &r)
	if r.Stdout != "user\n/home/user\n" || r.CapsuleID != f.platform {
		t.Fatalf("admin exec: %s", res.Body)
	}
	_ = f.do(t, "POST", base+"/exec", admin, map[string]any{"cmd": "sleep", "args": []string{"300"}, "background": true, "tag": "admin-bg"}, 202)
	var ps struct{ Processes []process }
	f.do(t, "GET", base+"/processes", admin, nil, 200).JSON(t, &ps)
	if findProcess(ps.Processes, "admin-bg") == nil {
		t.Fatalf("admin process list: %+v", ps)
	}
	c := mustDial(t, f, base+"/processes/admin-bg/stream", admin)
	if fr := c.next(); fr.Type != "start" || fr.Tag != "admin-bg" {
		t.Fatalf("admin process stream: %+v", fr)
	}
	f.do(t, "DELETE", base+"/processes/admin-bg", admin, nil, 204)
	if fr := c.next(); fr.Type != "exit" {
		t.Fatalf("admin process stream after kill: %+v", fr)
	}
	c.expectClosed(websocket.StatusNormalClosure)

	c = mustDial(t, f, base+"/exec/stream", admin)
	c.send(map[string]any{"type": "start", "cmd": "id", "args": []string{"-un"}})
	if fr := c.next(); fr.Type != "start" {
		t.Fatalf("admin exec stream: %+v", fr)
	}
	c.collect("stdout", func(s string) bool { return s == "user\n" })

	// Files as the default user: its home works, root's is 403.
	f.do(t, "POST", base+"/files/write", admin, upload(t, "/home/user/admin.txt", []byte("adm"), false), 204)
	if got := f.do(t, "POST", base+"/files/read", admin, map[string]string{"path": "~/admin.txt"}, 200); string(got.Body) != "adm" {
		t.Fatalf("admin read %q", got.Body)
	}
	var ls struct{ Entries []fileEntry }
	f.do(t, "POST", base+"/files/list", admin, map[string]string{"path": "/home/user"}, 200).JSON(t, &ls)
	if len(ls.Entries) == 0 || ls.Entries[0].Owner != "user" {
		t.Fatalf("admin list %+v", ls.Entries)
	}
	var mk struct{ Entry fileEntry }
	f.do(t, "POST", base+"/files/mkdir", admin, map[string]string{"path": "/home/user/d"}, 200).JSON(t, &mk)
	if mk.Entry.Owner != "user" || mk.Entry.Type != "directory" {
		t.Fatalf("admin mkdir %+v", mk.Entry)
	}
	f.do(t, "POST", base+"/files/remove", admin, map[string]string{"path": "/home/user/d"}, 204)
	wantError(t, f.env.Do(t, "POST", base+"/files/read", admin, map[string]string{"path": "/root/.profile-none"}), 403, "forbidden", "")
	wantError(t, f.env.Do(t, "POST", base+"/files/write", admin, upload(t, "/root/x", []byte("x"), false)), 403, "forbidden", "")
	wantError(t, f.env.Do(t, "POST", base+"/files/mkdir", admin, map[string]string{"path": "/root/d"}), 403, "forbidden", "")

	// PTY as admin.
	c = mustDial(t, f, base+"/pty", admin)
	c.send(map[string]any{"type": "start", "cmd": "/bin/sh"})
	if fr := c.next(); fr.Type != "started" {
		t.Fatalf("admin PTY: %+v", fr)
	}
	c.send(input("echo I am $(id -un)\n"))
	ptyOutput(t, c, "I am user")
	c.send(map[string]string{"type": "kill"})

	// Not served under /v1/admin: files/stream/*, and no /v1/sandboxes alias for admin routes.
	wantError(t, f.env.Do(t, "POST", base+"/files/stream/read", admin, map[string]string{"path": "/etc/hostname"}), 404, "not_found", "")
	wantError(t, f.env.Do(t, "POST", base+"/files/stream/write", admin, upload(t, "/tmp/x", []byte("x"), false)), 404, "not_found", "")
	// The platform capsule is not reachable through team routes of a team.
	wantError(t, f.env.Do(t, "POST", "/v1/capsules/"+f.platform+"/exec", f.key(), map[string]any{"cmd": "true"}), 404, "not_found", "sandbox not found")
}

func testActivity(t *testing.T, f *fixture) {
	ctx := context.Background()
	get := func() time.Time {
		t.Helper()
		c, err := f.env.Store.GetCapsuleByID(ctx, f.capsuleU)
		if err != nil || c.LastActiveAt == nil {
			t.Fatalf("capsule %+v: %v", c, err)
		}
		return *c.LastActiveAt
	}
	for _, r := range []struct {
		name string
		call func()
	}{
		{"exec", func() { f.sh(t, "true") }},
		{"process list", func() { f.processes(t, false) }},
		{"file list", func() { f.do(t, "POST", f.base()+"/files/list", f.key(), map[string]string{"path": "/"}, 200) }},
		{"pty attach", func() {
			c := mustDial(t, f, f.base()+"/pty", f.key())
			c.send(map[string]any{"type": "start", "cmd": "/bin/sh"})
			if fr := c.next(); fr.Type != "started" {
				t.Fatalf("started %+v", fr)
			}
			c.send(map[string]string{"type": "kill"})
		}},
	} {
		before := get()
		time.Sleep(20 * time.Millisecond)
		r.call()
		if after := get(); !after.After(before) {
			t.Errorf("%s did not record activity (%s → %s)", r.name, before, after)
		}
	}
}
