package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/wrenn/wrenn/internal/cli/profile"
)

func TestParseRemote(t *testing.T) {
	tests := []struct {
		in     string
		remote bool
		want   remote
	}{
		{"cl-abc:/tmp/x", true, remote{"cl-abc", "/tmp/x"}},
		{"cl-abc:rel/path", true, remote{"cl-abc", "rel/path"}},
		{"cl-abc:", true, remote{"cl-abc", ""}},
		{"./cl-abc:/tmp/x", false, remote{}},
		{"/abs/file", false, remote{}},
		{"-", false, remote{}},
		{":x", false, remote{}},
		{"dir/with:colon", false, remote{}},
	}
	for _, tt := range tests {
		got, ok := parseRemote(tt.in)
		if ok != tt.remote || got != tt.want {
			t.Errorf("parseRemote(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.remote)
		}
	}
}

func TestTargets(t *testing.T) {
	if got, err := remoteTarget("/tmp/", "/home/me/data.bin"); err != nil || got != "/tmp/data.bin" {
		t.Errorf("remoteTarget dir = %q, %v", got, err)
	}
	if got, err := remoteTarget("/tmp/f", "-"); err != nil || got != "/tmp/f" {
		t.Errorf("remoteTarget file = %q, %v", got, err)
	}
	if _, err := remoteTarget("/tmp/", "-"); err == nil {
		t.Error("remoteTarget: stdin into a directory accepted")
	}
	dir := t.TempDir()
	if got, _ := localTarget(dir, "/var/log/app.log"); got != filepath.Join(dir, "app.log") {
		t.Errorf("localTarget existing dir = %q", got)
	}
	if got, _ := localTarget("out/", "/a/b.txt"); got != filepath.Join("out", "b.txt") {
		t.Errorf("localTarget trailing slash = %q", got)
	}
	if got, _ := localTarget("-", "/a/b.txt"); got != "-" {
		t.Errorf("localTarget stdout = %q", got)
	}
}

func TestExecRequest(t *testing.T) {
	o := execOptions{env: []string{"A=1", "B=x=y", "C="}, cwd: "/tmp", timeout: 5}
	req, err := o.request([]string{"sh", "-c", "echo hi"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"cmd": "sh", "args": []string{"-c", "echo hi"}, "cwd": "/tmp", "timeout_sec": 5,
		"envs": map[string]string{"A": "1", "B": "x=y", "C": ""},
	}
	if !reflect.DeepEqual(req, want) {
		t.Errorf("request = %#v\nwant %#v", req, want)
	}
	bg := execOptions{background: true, tag: "job"}
	if req, _ := bg.request([]string{"true"}); req["background"] != true || req["tag"] != "job" || req["timeout_sec"] != nil {
		t.Errorf("background request = %#v", req)
	}
	for _, bad := range []execOptions{{tag: "x"}, {timeout: -1}, {env: []string{"NOEQUALS"}}, {env: []string{"=v"}}} {
		if _, err := bad.request([]string{"true"}); err == nil {
			t.Errorf("%+v accepted", bad)
		} else if _, ok := err.(*usageError); !ok {
			t.Errorf("%+v: %T is not a usage error", bad, err)
		}
	}
}

func TestExitCode(t *testing.T) {
	for remote, want := range map[int]int{0: 0, 3: 3, 255: 255, -1: 137, 256: 0, 300: 44} {
		if got := exitCode(remote); got != want {
			t.Errorf("exitCode(%d) = %d, want %d", remote, got, want)
		}
	}
}

func TestNormalizeSignal(t *testing.T) {
	for in, want := range map[string]string{"SIGTERM": "SIGTERM", "term": "SIGTERM", "15": "SIGTERM", "sigkill": "SIGKILL", "KILL": "SIGKILL", "9": "SIGKILL"} {
		if got, err := normalizeSignal(in); err != nil || got != want {
			t.Errorf("normalizeSignal(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := normalizeSignal("SIGHUP"); err == nil {
		t.Error("SIGHUP accepted")
	}
}

func TestShellProgram(t *testing.T) {
	if cmd, args := shellProgram(""); cmd != "/bin/sh" || len(args) != 2 || !strings.Contains(args[1], "bash") {
		t.Errorf("default = %q %q", cmd, args)
	}
	if cmd, args := shellProgram("/bin/zsh"); cmd != "/bin/zsh" || args != nil {
		t.Errorf("program = %q %q", cmd, args)
	}
	if cmd, args := shellProgram("python3 -i"); cmd != "/bin/sh" || !reflect.DeepEqual(args, []string{"-c", "python3 -i"}) {
		t.Errorf("command line = %q %q", cmd, args)
	}
}

func TestOneLine(t *testing.T) {
	in := "unknown command \"capsul\" for \"wrenn\"\n\nDid you mean this?\n\tcapsule\n"
	if got := oneLine(in); got != `unknown command "capsul" for "wrenn"; did you mean: capsule` {
		t.Errorf("oneLine = %q", got)
	}
}

// run executes the CLI in-process with the configuration file cfg and returns its output and code.
func run(t *testing.T, cfg string, args ...string) (string, string, int) {
	t.Helper()
	t.Setenv(profile.EnvPath, cfg)
	for _, k := range []string{EnvURL, EnvAPIKey, EnvToken, EnvProfile} {
		t.Setenv(k, "")
	}
	root := NewRoot()
	var stdout, stderr bytes.Buffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetIn(strings.NewReader(""))
	root.SetArgs(args)
	code := Execute(root)
	return stdout.String(), stderr.String(), code
}

// fakeAPI answers like the control plane: capsule routes need the key, host routes the JWT.
func fakeAPI(t *testing.T, key, jwt string) *httptest.Server {
	mux := http.NewServeMux()
	fail := func(w http.ResponseWriter, status int, code, msg string, extra map[string]any) {
		body := map[string]any{"code": code, "message": msg}
		for k, v := range extra {
			body[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": body})
	}
	mux.HandleFunc("GET /v1/capsules/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-API-Key") != key {
			fail(w, 401, "unauthorized", "invalid API key", nil)
			return
		}
		if r.PathValue("id") != "cl-known" {
			fail(w, 404, "not_found", "sandbox not found", nil)
			return
		}
		_, _ = w.Write([]byte(`{"id":"cl-known","status":"running","template":"minimal","vcpus":1,"memory_mb":256}`))
	})
	mux.HandleFunc("DELETE /v1/hosts/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+jwt {
			fail(w, 401, "unauthorized", "invalid token", nil)
			return
		}
		fail(w, 409, "has_active_capsules", "host has active capsules: destroy them first or delete with ?force=true",
			map[string]any{"capsule_ids": []string{"cl-a", "cl-b"}})
	})
	mux.HandleFunc("POST /v1/capsules/{id}/fork", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Count int `json:"count"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || r.PathValue("id") != "cl-known" {
			fail(w, 400, "invalid_request", "bad fork", nil)
			return
		}
		out := make([]map[string]string, body.Count)
		for i := range out {
			out[i] = map[string]string{"id": fmt.Sprintf("cl-copy%d", i), "status": "running"}
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("POST /v1/capsules/{id}/exec", func(w http.ResponseWriter, r *http.Request) {
		fail(w, 504, "timeout", "command timed out after 1s", nil)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestExecuteErrors(t *testing.T) {
	srv := fakeAPI(t, "wrn_good", "jwt-good")
	cfg := filepath.Join(t.TempDir(), "config.json")
	c := &profile.Config{Profiles: map[string]profile.Profile{}}
	c.Set("test", profile.Profile{URL: srv.URL, APIKey: "wrn_good", Token: "jwt-good"})
	if err := c.Save(cfg); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string // substring of the one line
		stdout string
	}{
		{"get", []string{"capsule", "get", "cl-known"}, 0, "", "running"},
		{"json", []string{"--json", "capsule", "get", "cl-known"}, 0, "", `"status": "running"`},
		{"not found", []string{"capsule", "get", "cl-nope"}, 1, "wrenn: sandbox not found", ""},
		{"bad key flag", []string{"--api-key", "wrn_bad", "capsule", "get", "cl-known"}, 1, "wrenn: invalid API key", ""},
		{"host in use", []string{"host", "rm", "host-x"}, 1, "(cl-a, cl-b): destroy them first or use --force", ""},
		{"timeout", []string{"capsule", "exec", "cl-known", "--", "sleep", "9"}, 124, "wrenn: command timed out", ""},
		{"fork", []string{"capsule", "fork", "cl-known", "-n", "3"}, 0, "", "cl-copy0 running\ncl-copy1 running\ncl-copy2 running\n"},
		{"fork count", []string{"capsule", "fork", "cl-known", "-n", "17"}, 1, "-n must be 1..16", ""},
		{"usage", []string{"capsule", "get"}, 2, "missing arguments", ""},
		{"unknown flag", []string{"capsule", "get", "--nope", "x"}, 2, "unknown flag: --nope", ""},
		{"unknown profile", []string{"--profile", "other", "capsule", "get", "x"}, 1, `no profile "other"`, ""},
		// A profile's credentials never go to another URL.
		{"other url", []string{"--url", "http://127.0.0.1:1", "capsule", "get", "x"}, 1, "no credentials", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := run(t, cfg, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.stderr) || !strings.Contains(out, tt.stdout) {
				t.Fatalf("exit %d stdout %q stderr %q; want exit %d, stdout with %q, stderr with %q",
					code, out, errOut, tt.code, tt.stdout, tt.stderr)
			}
			if tt.code != 0 && strings.Count(errOut, "\n") != 1 {
				t.Fatalf("stderr is not one line: %q", errOut)
			}
		})
	}
}

// TestCapsuleCreateSecure: --secure asks for a secure capsule; without it the request leaves secure out.
func TestCapsuleCreateSecure(t *testing.T) {
	var bodies []map[string]any
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/capsules", func(w http.ResponseWriter, r *http.Request) {
		var b map[string]any
		_ = json.NewDecoder(r.Body).Decode(&b)
		bodies = append(bodies, b)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":"cl-new","status":"running","secure":true,"traffic_access_token":"tok"}`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	cfg := filepath.Join(t.TempDir(), "config.json")
	c := &profile.Config{Profiles: map[string]profile.Profile{}}
	c.Set("test", profile.Profile{URL: srv.URL, APIKey: "wrn_good"})
	if err := c.Save(cfg); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := run(t, cfg, "capsule", "create", "--template", "minimal", "--secure"); code != 0 || strings.TrimSpace(out) != "cl-new" {
		t.Fatalf("create --secure: exit %d stdout %q stderr %q", code, out, errOut)
	}
	if out, errOut, code := run(t, cfg, "capsule", "create", "--template", "minimal"); code != 0 {
		t.Fatalf("create: exit %d stdout %q stderr %q", code, out, errOut)
	}
	if len(bodies) != 2 || bodies[0]["secure"] != true || bodies[1]["secure"] != nil {
		t.Fatalf("request bodies %v: want secure:true, then no secure", bodies)
	}
}
