package builder_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wrenn/wrenn/internal/testutil/cptest"
	"github.com/wrenn/wrenn/internal/testutil/platform"
)

// TestBuilder runs every builder scenario on one platform (the agent debootstraps `base` once): the
// first control plane (the one the agent talks to) runs no builds, a second one does, and is killed
// at the end.
func TestBuilder(t *testing.T) {
	p := newPlatform(t, "--build-workers=-1")
	p.CPArgs = nil
	worker := p.StartCP(0)
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *platform.Platform)
	}{
		{"Rejected", testBuildRejected},
		{"Templates", testBuildTemplates},
		{"FailAndCancel", testBuildFailAndCancel},
		{"ControlPlaneKilled", func(t *testing.T, p *platform.Platform) { testControlPlaneKilled(t, p, worker) }},
	} {
		if !t.Run(tc.name, func(t *testing.T) { tc.run(t, p) }) {
			return
		}
	}
}

// A recipe with USER, WORKDIR, ENV (one referring to another), COPY from a tar.gz, RUN and a START
// service with a healthcheck becomes a snapshot template: a capsule created from it runs as the user,
// sees the env and the copied files owned by the user, and the service answers, also after
// pause/resume. A second build COPYs from a zip into a files-only template and is followed over the
// events WebSocket.
func testBuildTemplates(t *testing.T, p *platform.Platform) {
	admin := cptest.Bearer(p.Admin)

	page := "<h1>built by wrenn</h1>"
	web := createBuild(t, p, map[string]any{
		"name": "webapp",
		"recipe": []string{
			"USER alice",
			"WORKDIR /home/alice/app",
			"# a comment is not a step",
			"ENV GREETING=hello",
			"env MESSAGE=${GREETING} world",
			"COPY site .",
			`RUN echo "$MESSAGE" > message.txt && test "$(id -un)" = alice && test "$HOME" = /home/alice`,
			"START python3 -m http.server 8000 --bind 127.0.0.1 --directory /home/alice/app",
		},
		"healthcheck": "--interval=1s --timeout=5s curl -sf http://127.0.0.1:8000/index.html",
	}, tarGz(t, file{name: "site/", dir: true}, file{name: "site/index.html", body: page}))
	if web.TotalSteps != 7+7 {
		t.Fatalf("total_steps %d", web.TotalSteps)
	}
	notes := createBuild(t, p, map[string]any{
		"name": "notes", "skip_pre_post": true,
		"recipe": []string{
			"USER bob",
			"WORKDIR work",
			"COPY data/notes.txt notes/",
			`RUN test "$(stat -c %U notes/notes.txt)" = bob && cat notes/notes.txt && pwd`,
		},
	}, zipOf(t, file{name: "data/notes.txt", body: "zip content\n"}))

	// A build of a name already in flight is refused.
	res := cptest.Call(t, p.URL(), "POST", "/v1/admin/builds", admin, map[string]any{"name": "notes", "recipe": []string{"RUN true"}})
	if res.Status != 409 || res.ErrorCode() != "template_name_taken" {
		t.Fatalf("second build of notes: %d %s", res.Status, res.Body)
	}

	// The zip build, followed live.
	msgs := follow(t, p, notes.ID)
	if msgs[0].Type != "build" || msgs[len(msgs)-1].Type != "status" || msgs[len(msgs)-1].Status != "success" {
		t.Fatalf("events: %+v", msgs)
	}
	steps := 0
	for _, m := range msgs {
		if m.Type == "step" {
			steps++
		}
	}
	if steps == 0 {
		t.Fatalf("no step events: %+v", msgs)
	}
	nb := getBuild(t, p, notes.ID)
	if nb.Status != "success" || len(nb.Logs) != 4 || nb.CurrentStep != 4 || nb.DefaultUser != "bob" {
		t.Fatalf("notes build: %+v", nb)
	}
	if last := nb.Logs[3]; last.Stdout != "zip content\n/work\n" || last.Phase != "recipe" || last.Step != 4 || !last.OK {
		t.Fatalf("notes last step: %+v", last)
	}

	wb := waitBuild(t, p, web.ID, buildTimeout, "success")
	if wb.DefaultUser != "alice" || wb.DefaultEnv["MESSAGE"] != "hello world" || wb.DefaultEnv["GREETING"] != "hello" {
		t.Fatalf("webapp defaults: %q %v", wb.DefaultUser, wb.DefaultEnv)
	}
	if _, ok := wb.DefaultEnv["HOME"]; ok {
		t.Fatalf("HOME in default_env: %v", wb.DefaultEnv)
	}
	if len(wb.Logs) != wb.TotalSteps || wb.Logs[0].Phase != "pre-build" || wb.Logs[len(wb.Logs)-1].Phase != "post-build" {
		t.Fatalf("webapp logs: %+v", wb.Logs)
	}
	waitCapsuleGone(t, p, wb.CapsuleID)
	types := map[string]string{}
	res = cptest.Call(t, p.URL(), "GET", "/v1/admin/templates", admin, nil)
	var tpls []struct{ Name, Type string }
	res.JSON(t, &tpls)
	for _, tp := range tpls {
		types[tp.Name] = tp.Type
	}
	if types["webapp"] != "snapshot" || types["notes"] != "base" {
		t.Fatalf("templates: %v", types)
	}

	// A capsule of the admin's team from the built template.
	res = cptest.Call(t, p.URL(), "POST", "/v1/capsules", cptest.Key(p.Key), map[string]any{"template": "webapp"})
	if res.Status != 201 {
		t.Fatalf("create capsule from webapp: %d %s", res.Status, res.Body)
	}
	var c struct{ ID string }
	res.JSON(t, &c)
	t.Cleanup(func() { cptest.Call(t, p.URL(), "DELETE", "/v1/capsules/"+c.ID, cptest.Key(p.Key), nil) })
	check := func(when string) {
		t.Helper()
		var got string
		// The service answers (it kept running in the snapshot); allow it a moment after a restore.
		platform.Eventually(t, 60*time.Second, "service "+when, func() error {
			got = execIn(t, p, c.ID, `id -un; echo "$MESSAGE"; stat -c %U /home/alice/app/index.html /home/alice/app/message.txt; cat /home/alice/app/message.txt; curl -sf http://127.0.0.1:8000/index.html || echo no-service`)
			if strings.HasSuffix(got, "no-service\n") {
				return errString(got)
			}
			return nil
		})
		want := "alice\nhello world\nalice\nalice\nhello world\n" + page
		if got != want {
			t.Fatalf("%s:\n%q\nwant\n%q", when, got, want)
		}
	}
	check("after create")
	if r := cptest.Call(t, p.URL(), "POST", "/v1/capsules/"+c.ID+"/pause", cptest.Key(p.Key), nil); r.Status != 200 {
		t.Fatalf("pause: %d %s", r.Status, r.Body)
	}
	if r := cptest.Call(t, p.URL(), "POST", "/v1/capsules/"+c.ID+"/resume", cptest.Key(p.Key), nil); r.Status != 200 {
		t.Fatalf("resume: %d %s", r.Status, r.Body)
	}
	check("after resume")
}

type errString string

func (e errString) Error() string { return string(e) }

type event struct {
	Type        string   `json:"type"`
	Status      string   `json:"status"`
	Error       string   `json:"error"`
	CurrentStep int      `json:"current_step"`
	Log         logEntry `json:"log"`
	Build       build    `json:"build"`
}

// follow reads the events WebSocket of build id (first-message auth) until the server closes it
// normally.
func follow(t *testing.T, p *platform.Platform, id string) []event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	url := "ws" + strings.TrimPrefix(p.URL(), "http") + "/v1/admin/builds/" + id + "/events"
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial events: %v", err)
	}
	defer c.CloseNow()
	auth, _ := json.Marshal(map[string]string{"type": "auth", "token": p.Admin})
	if err := c.Write(ctx, websocket.MessageText, auth); err != nil {
		t.Fatal(err)
	}
	var msgs []event
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Fatalf("events ended with %v after %+v", err, msgs)
			}
			return msgs
		}
		var m event
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m.Type == "error" {
			t.Fatalf("error frame: %s", b)
		}
		msgs = append(msgs, m)
	}
}

// Bad requests create nothing: validation errors, a malicious archive, a too large one.
func testBuildRejected(t *testing.T, p *platform.Platform) {
	admin := cptest.Bearer(p.Admin)
	for _, tc := range []struct {
		body   any
		status int
		code   string
		msg    string
	}{
		{map[string]any{"recipe": []string{"RUN true"}}, 400, "invalid_request", "name is required"},
		{map[string]any{"name": "x", "recipe": []string{}}, 400, "invalid_request", "recipe must contain at least one command"},
		{map[string]any{"name": "x", "recipe": []string{"RUN true", "FROM debian"}}, 400, "invalid_request", "recipe line 2: "},
		{map[string]any{"name": "x", "recipe": []string{"RUN true"}, "healthcheck": "--bogus=1 true"}, 400, "invalid_request", "healthcheck: "},
		{map[string]any{"name": "x", "recipe": []string{"RUN true"}, "base_template": "nope"}, 404, "not_found", ""},
		{map[string]any{"name": "base", "recipe": []string{"RUN true"}}, 409, "template_name_taken", ""},
		{multipartBody(t, map[string]any{"name": "evil", "recipe": []string{"COPY a /a"}},
			tarGz(t, file{name: "../escape", body: "x"})), 400, "invalid_archive", ""},
		{multipartBody(t, map[string]any{"name": "evil", "recipe": []string{"COPY a /a"}}, []byte("not an archive at all")), 400, "invalid_archive", ""},
	} {
		res := cptest.Call(t, p.URL(), "POST", "/v1/admin/builds", admin, tc.body)
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		res.JSON(t, &e)
		if res.Status != tc.status || e.Error.Code != tc.code || !strings.HasPrefix(e.Error.Message, tc.msg) {
			t.Errorf("%v: %d %s; want %d %s %q", tc.body, res.Status, res.Body, tc.status, tc.code, tc.msg)
		}
	}
	res := cptest.Call(t, p.URL(), "GET", "/v1/admin/builds", admin, nil)
	var list []build
	res.JSON(t, &list)
	if res.Status != 200 || len(list) != 0 {
		t.Fatalf("builds after rejected requests: %d %s", res.Status, res.Body)
	}
	// Not an admin.
	if r := cptest.Call(t, p.URL(), "GET", "/v1/admin/builds", cptest.Key(p.Key), nil); r.Status != 401 && r.Status != 403 {
		t.Fatalf("builds with an API key: %d", r.Status)
	}
	if r := cptest.Call(t, p.URL(), "GET", "/v1/admin/builds/bld-nope", admin, nil); r.Status != 400 {
		t.Fatalf("bad id: %d", r.Status)
	}
}

// A failing RUN fails the build with its phase, step and stderr and destroys the capsule; cancel stops a
// running step at once, destroys the capsule, and the build stays cancelled.
func testBuildFailAndCancel(t *testing.T, p *platform.Platform) {
	admin := cptest.Bearer(p.Admin)
	broken := createBuild(t, p, map[string]any{"name": "broken", "skip_pre_post": true,
		"recipe": []string{"RUN echo fine", "RUN echo oops >&2; exit 3", "RUN echo never"}}, nil)
	slow := createBuild(t, p, map[string]any{"name": "slow", "skip_pre_post": true,
		"recipe": []string{"RUN echo started", "RUN --timeout=30m sleep 1800"}}, nil)

	b := waitBuild(t, p, broken.ID, buildTimeout, "failed")
	if b.Error != "recipe step 2 failed: oops" || len(b.Logs) != 2 || b.Logs[1].Exit != 3 || b.Logs[1].OK || b.CurrentStep != 2 {
		t.Fatalf("failed build: %+v", b)
	}
	waitCapsuleGone(t, p, b.CapsuleID)

	platform.Eventually(t, buildTimeout, "slow build in its long step", func() error {
		s := getBuild(t, p, slow.ID)
		if s.Status != "running" || s.CurrentStep != 1 {
			return errString("status " + s.Status)
		}
		return nil
	})
	if r := cptest.Call(t, p.URL(), "POST", "/v1/admin/builds/"+slow.ID+"/cancel", admin, nil); r.Status != 204 {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	s := getBuild(t, p, slow.ID)
	if s.Status != "cancelled" {
		t.Fatalf("after cancel: %+v", s)
	}
	waitCapsuleGone(t, p, s.CapsuleID)
	r := cptest.Call(t, p.URL(), "POST", "/v1/admin/builds/"+slow.ID+"/cancel", admin, nil)
	if r.Status != 400 || !strings.Contains(string(r.Body), "build is already cancelled") {
		t.Fatalf("second cancel: %d %s", r.Status, r.Body)
	}
	time.Sleep(3 * time.Second) // the worker has noticed; it must not overwrite the status
	if s := getBuild(t, p, slow.ID); s.Status != "cancelled" || len(s.Logs) != 1 {
		t.Fatalf("cancelled build later: %+v", s)
	}
}

// A control plane killed mid-build: another one fails the build and destroys its capsule.
func testControlPlaneKilled(t *testing.T, p *platform.Platform, worker *platform.ControlPlane) {
	b := createBuild(t, p, map[string]any{"name": "orphan", "skip_pre_post": true,
		"recipe": []string{"RUN echo started", "RUN --timeout=30m sleep 1800"}}, nil)
	var capsule string
	platform.Eventually(t, buildTimeout, "build in its long step", func() error {
		s := getBuild(t, p, b.ID)
		if s.Status != "running" || s.CurrentStep != 1 || s.CapsuleID == "" {
			return errString("status " + s.Status)
		}
		capsule = s.CapsuleID
		return nil
	})
	worker.Kill()
	got := waitBuild(t, p, b.ID, 120*time.Second, "failed")
	if !strings.Contains(got.Error, "control plane") {
		t.Fatalf("lost build: %+v", got)
	}
	waitCapsuleGone(t, p, capsule)
}
