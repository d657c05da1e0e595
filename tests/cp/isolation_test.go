package cp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wrenn/wrenn/internal/testutil/cptest"
	"github.com/wrenn/wrenn/internal/testutil/platform"
)

// TestTenantIsolation: a second team's key gets 404 on every capsule, process, PTY, file, snapshot and
// metrics route of the first team's capsule, and nothing changes; a member cannot do an owner's job; an
// API key cannot reach JWT-only routes.
func TestTenantIsolation(t *testing.T) {
	p := platform.New(t, 1)
	p.AddHost(t, false)
	owner := cptest.Key(p.Key)
	c := p.CreateCapsule(t, p.URL(), owner)
	t.Cleanup(func() { cptest.Call(t, p.URL(), "DELETE", "/v1/capsules/"+c.ID, owner, nil) })

	bobJWT, bobTeam := p.Signup(t, "bob@example.test", "Bob")
	res := cptest.Call(t, p.URL(), "POST", "/v1/api-keys", cptest.Bearer(bobJWT), map[string]string{"name": "bob"})
	if res.Status != 201 {
		t.Fatalf("bob's key: %d %s", res.Status, res.Body)
	}
	var k struct{ Key string }
	res.JSON(t, &k)
	for _, cred := range []cptest.Cred{cptest.Key(k.Key), cptest.Bearer(bobJWT)} {
		for _, prefix := range []string{"/v1/capsules/", "/v1/sandboxes/"} {
			base := prefix + c.ID
			for _, r := range []struct {
				method, path string
				body         any
			}{
				{"GET", base, nil},
				{"DELETE", base, nil},
				{"POST", base + "/exec", map[string]any{"cmd": "touch", "args": []string{"/tmp/bob"}}},
				{"POST", base + "/exec", map[string]any{"cmd": "sleep", "args": []string{"100"}, "background": true}},
				{"GET", base + "/processes", nil},
				{"DELETE", base + "/processes/1", nil},
				{"DELETE", base + "/processes/some-tag", nil},
				{"POST", base + "/ping", nil},
				{"POST", base + "/pause", nil},
				{"POST", base + "/resume", nil},
				{"GET", base + "/metrics", nil},
				{"POST", base + "/files/read", map[string]any{"path": "/etc/hostname"}},
				{"POST", base + "/files/stream/read", map[string]any{"path": "/etc/hostname"}},
				{"POST", base + "/files/list", map[string]any{"path": "/"}},
				{"POST", base + "/files/mkdir", map[string]any{"path": "/tmp/bobdir"}},
				{"POST", base + "/files/remove", map[string]any{"path": "/etc"}},
				{"POST", base + "/files/write", nil},
				{"POST", base + "/files/stream/write", nil},
			} {
				body := r.body
				if body == nil && strings.Contains(r.path, "/files/") {
					body = multipartFile(t, "/tmp/bob", "x")
				}
				got := cptest.Call(t, p.URL(), r.method, r.path, cred, body)
				if got.Status != 404 || got.ErrorCode() != "not_found" {
					t.Errorf("%s %s as another team: %d %s", r.method, r.path, got.Status, got.Body)
				}
			}
			for _, ws := range []string{base + "/exec/stream", base + "/processes/1/stream", base + "/pty"} {
				frame := wsFirstFrame(t, p.URL(), ws, cred)
				if frame.Type != "error" || frame.Code != "not_found" || !frame.Fatal {
					t.Errorf("WS %s as another team: %+v", ws, frame)
				}
			}
		}
		got := cptest.Call(t, p.URL(), "POST", "/v1/snapshots", cred, map[string]any{"capsule_id": c.ID})
		if got.Status != 404 {
			t.Errorf("snapshot of another team's capsule: %d %s", got.Status, got.Body)
		}
		got = cptest.Call(t, p.URL(), "GET", "/v1/capsules", cred, nil)
		if strings.Contains(string(got.Body), c.ID) {
			t.Errorf("another team lists the capsule: %s", got.Body)
		}
	}
	// Nothing changed.
	if s := p.GetCapsule(t, p.URL(), c.ID).Status; s != "running" {
		t.Fatalf("capsule status after the other team's attempts: %s", s)
	}
	res = cptest.Call(t, p.URL(), "POST", "/v1/capsules/"+c.ID+"/exec", owner, map[string]any{"cmd": "/bin/sh", "args": []string{"-c", "ls /tmp/bob /tmp/bobdir 2>&1; ls /etc >/dev/null && echo etc-ok"}})
	if !strings.Contains(string(res.Body), "etc-ok") || !strings.Contains(string(res.Body), "No such file") {
		t.Fatalf("capsule changed by another team: %s", res.Body)
	}

	// A member cannot do an owner's job.
	res = cptest.Call(t, p.URL(), "POST", "/v1/teams/"+p.TeamID+"/members", cptest.Bearer(p.Admin), map[string]string{"email": "bob@example.test"})
	if res.Status != 201 {
		t.Fatalf("add member: %d %s", res.Status, res.Body)
	}
	res = cptest.Call(t, p.URL(), "POST", "/v1/auth/switch-team", cptest.Bearer(bobJWT), map[string]string{"team_id": p.TeamID})
	if res.Status != 200 {
		t.Fatalf("switch-team: %d %s", res.Status, res.Body)
	}
	var sw struct{ Token string }
	res.JSON(t, &sw)
	member := cptest.Bearer(sw.Token)
	for _, r := range []struct{ method, path string }{
		{"PATCH", "/v1/teams/" + p.TeamID},
		{"DELETE", "/v1/teams/" + p.TeamID},
		{"POST", "/v1/teams/" + p.TeamID + "/members"},
	} {
		got := cptest.Call(t, p.URL(), r.method, r.path, member, map[string]string{"name": "Renamed", "email": "x@example.test"})
		if got.Status != 403 {
			t.Errorf("member %s %s: %d %s", r.method, r.path, got.Status, got.Body)
		}
	}
	// As a member, Bob now sees the team's capsule.
	if got := cptest.Call(t, p.URL(), "GET", "/v1/capsules/"+c.ID, member, nil); got.Status != 200 {
		t.Errorf("member reads the team's capsule: %d %s", got.Status, got.Body)
	}
	_ = bobTeam

	// API keys work only on capsule and snapshot routes.
	for _, path := range []string{"/v1/api-keys", "/v1/teams", "/v1/me", "/v1/hosts", "/v1/audit-logs"} {
		got := cptest.Call(t, p.URL(), "GET", path, owner, nil)
		if got.Status != 401 && got.Status != 403 {
			t.Errorf("API key on JWT-only %s: %d %s", path, got.Status, got.Body)
		}
	}
}

func multipartFile(t *testing.T, path, content string) *multipartBody {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	_ = w.WriteField("path", path)
	fw, err := w.CreateFormFile("file", "f")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fw.Write([]byte(content))
	_ = w.Close()
	return &multipartBody{Buffer: &buf, contentType: w.FormDataContentType()}
}

// multipartBody is a multipart request body with its Content-Type (cptest sets it).
type multipartBody struct {
	*bytes.Buffer
	contentType string
}

func (m *multipartBody) ContentType() string { return m.contentType }

type frame struct {
	Type  string `json:"type"`
	Code  string `json:"code"`
	Data  string `json:"data"`
	Fatal bool   `json:"fatal"`
}

// wsFirstFrame opens a WebSocket with header credentials and returns the first frame.
func wsFirstFrame(t *testing.T, base, path string, cred cptest.Cred) frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	h := http.Header{}
	if cred.APIKey != "" {
		h.Set("X-API-Key", cred.APIKey)
	} else {
		h.Set("Authorization", "Bearer "+cred.JWT)
	}
	conn, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+path, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", path, err, status)
	}
	defer conn.CloseNow()
	_ = conn.Write(ctx, websocket.MessageText, []byte(`{"type":"start","cmd":"/bin/sh","tag":"x"}`))
	_, b, err := conn.Read(ctx)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("frame %s: %v", b, err)
	}
	return f
}
