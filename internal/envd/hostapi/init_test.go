package hostapi

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/envd/defaults"
	"github.com/wrenn/wrenn/internal/envd/metadata"
)

func TestInitBodyAndToken(t *testing.T) {
	type state struct {
		token, user, workdir, envA string
	}
	tests := []struct {
		name   string
		token  string // token before the call
		body   string
		header string // X-Access-Token
		status int
		want   state
	}{
		{name: "empty body re-syncs", body: "", status: 204, want: state{user: "root"}},
		{name: "whitespace body", body: " \n", status: 204, want: state{user: "root"}},
		{name: "invalid JSON", body: `{"envVars":`, status: 400, want: state{user: "root"}},
		{name: "wrong field type", body: `{"envVars":["A"]}`, status: 400, want: state{user: "root"}},
		{name: "bad timestamp", body: `{"timestamp":"yesterday","envVars":{"A":"1"}}`, status: 400, want: state{user: "root"}},
		{
			name:   "all fields",
			body:   `{"envVars":{"A":"1"},"defaultUser":"user","defaultWorkdir":"/home/user","accessToken":"tok","timestamp":"2026-01-02T03:04:05.123Z"}`,
			status: 204, want: state{token: "tok", user: "user", workdir: "/home/user", envA: "1"},
		},
		{
			name:   "unknown and E2B-only fields ignored",
			body:   `{"envVars":{"A":"2"},"volumeMounts":[{"nfs_target":"x","path":"/m"}],"hyperloopIP":"1.2.3.4","caBundle":"-","lifecycleID":"l","future":{"x":1}}`,
			status: 204, want: state{user: "root", envA: "2"},
		},
		{name: "first token is free", body: `{"accessToken":"new"}`, status: 204, want: state{token: "new", user: "root"}},
		{name: "null token leaves it", token: "cur", body: `{"accessToken":null,"envVars":{"A":"3"}}`, header: "cur", status: 204, want: state{token: "cur", user: "root", envA: "3"}},
		{name: "absent token leaves it", token: "cur", body: `{"envVars":{"A":"3"}}`, header: "cur", status: 204, want: state{token: "cur", user: "root", envA: "3"}},
		{name: "no proof once a token is set", token: "cur", body: `{"envVars":{"A":"3"},"defaultUser":"u","defaultWorkdir":"/tmp"}`, status: 401, want: state{token: "cur", user: "root"}},
		{name: "empty body without proof", token: "cur", body: ``, status: 401, want: state{token: "cur", user: "root"}},
		{name: "wrong proof without a token change", token: "cur", body: `{"defaultUser":"u"}`, header: "nope", status: 401, want: state{token: "cur", user: "root"}},
		{name: "re-sending the current token", token: "cur", body: `{"accessToken":"cur","envVars":{"A":"4"}}`, status: 204, want: state{token: "cur", user: "root", envA: "4"}},
		{name: "change without proof", token: "cur", body: `{"accessToken":"other","envVars":{"A":"5"},"defaultUser":"u"}`, status: 401, want: state{token: "cur", user: "root"}},
		{name: "change with wrong proof", token: "cur", body: `{"accessToken":"other"}`, header: "nope", status: 401, want: state{token: "cur", user: "root"}},
		{name: "change with proof", token: "cur", body: `{"accessToken":"other","envVars":{"A":"6"}}`, header: "cur", status: 204, want: state{token: "other", user: "root", envA: "6"}},
		{name: "clear without proof", token: "cur", body: `{"accessToken":""}`, status: 401, want: state{token: "cur", user: "root"}},
		{name: "clear with proof", token: "cur", body: `{"accessToken":""}`, header: "cur", status: 204, want: state{user: "root"}},
		{name: "clear when none set", body: `{"accessToken":""}`, status: 204, want: state{user: "root"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := defaults.New(nil)
			if tt.token != "" {
				tok := tt.token
				if _, err := d.Apply(defaults.Update{AccessToken: &tok}, nil); err != nil {
					t.Fatal(err)
				}
			}
			h := newHost(t, Config{Defaults: d, Ports: idlePorts(t)})
			var hdr []string
			if tt.header != "" {
				hdr = []string{"X-Access-Token", tt.header}
			}
			w := do(h, http.MethodPost, "/init", tt.body, hdr...)
			if tt.status == 204 {
				if w.Code != 204 || w.Header().Get("Cache-Control") != "no-store" || w.Body.Len() != 0 {
					t.Fatalf("got %d %q %q, want 204 no-store", w.Code, w.Header().Get("Cache-Control"), w.Body)
				}
				if !h.ports.Running() {
					t.Error("port subsystem not started")
				}
			} else {
				wantError(t, w, tt.status)
				if h.ports.Running() {
					t.Error("a rejected /init started the port subsystem")
				}
			}
			got := state{d.Token(), d.DefaultUser(), d.DefaultWorkdir(), d.Env()["A"]}
			if got != tt.want {
				t.Fatalf("state %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestInitTimestamps(t *testing.T) {
	d := defaults.New(nil)
	h := newHost(t, Config{Defaults: d})
	steps := []struct {
		body  string
		wantA string
	}{
		{`{"timestamp":"2026-05-01T10:00:00Z","envVars":{"A":"t2"}}`, "t2"},
		{`{"timestamp":"2026-05-01T09:59:59Z","envVars":{"A":"t1"}}`, "t2"},        // older: ignored
		{`{"timestamp":"2026-05-01T12:00:00+02:00","envVars":{"A":"same"}}`, "t2"}, // equal instant: ignored
		{`{"envVars":{"A":"none"}}`, "none"},                                       // no timestamp: applies
		{`{"timestamp":"2026-05-01T10:00:00.5Z","envVars":{"A":"t3"}}`, "t3"},
		{`{"timestamp":"2026-05-01T10:00:00.1Z","accessToken":"x"}`, "t3"}, // older again
	}
	for i, s := range steps {
		w := do(h, http.MethodPost, "/init", s.body)
		if w.Code != http.StatusNoContent {
			t.Fatalf("step %d: status %d, want 204 even when ignored", i, w.Code)
		}
		if got := d.Env()["A"]; got != s.wantA {
			t.Fatalf("step %d: A=%q, want %q", i, got, s.wantA)
		}
	}
	if d.Token() != "" {
		t.Fatal("an ignored body set the token")
	}
}

func TestInitClock(t *testing.T) {
	if h := newHost(t, Config{}); h.setClock != nil && os.Getpid() != 1 {
		t.Fatal("the clock may only be stepped when envd is PID 1")
	}
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		ts   string
		want bool
	}{
		{"stale guest clock is stepped", "2026-05-01T12:00:00Z", true},
		{"guest ahead is stepped back", "2026-05-01T09:00:00Z", true},
		{"within tolerance", "2026-05-01T10:00:00.5Z", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHost(t, Config{})
			var got []time.Time
			h.now = func() time.Time { return now }
			h.setClock = func(ts time.Time) error { got = append(got, ts); return nil }
			if w := do(h, http.MethodPost, "/init", `{"timestamp":"`+tt.ts+`"}`); w.Code != 204 {
				t.Fatalf("status %d", w.Code)
			}
			if (len(got) == 1) != tt.want {
				t.Fatalf("setClock calls %v, want stepped=%v", got, tt.want)
			}
			// Replaying the same body is ignored and must not step again.
			do(h, http.MethodPost, "/init", `{"timestamp":"`+tt.ts+`"}`)
			if len(got) > 1 {
				t.Fatalf("ignored body stepped the clock: %v", got)
			}
		})
	}
}

func TestInitIdentity(t *testing.T) {
	runDir := filepath.Join(t.TempDir(), "run", "wrenn")
	metaPath := filepath.Join(t.TempDir(), "metadata.json")
	d := defaults.New(nil)
	h := newHost(t, Config{Defaults: d, Metadata: metadata.File{Path: metaPath}, RunDir: runDir})

	check := func(step, sandbox, template string) {
		t.Helper()
		env := d.Env()
		if env[envSandboxID] != sandbox || env[envTemplateID] != template {
			t.Fatalf("%s: env ids %q/%q, want %q/%q", step, env[envSandboxID], env[envTemplateID], sandbox, template)
		}
		for file, want := range map[string]string{fileSandbox: sandbox, fileTemplate: template} {
			b, err := os.ReadFile(filepath.Join(runDir, file))
			if want == "" {
				if err == nil {
					t.Fatalf("%s: %s written without metadata", step, file)
				}
				continue
			}
			if err != nil || string(b) != want {
				t.Fatalf("%s: %s = %q, %v; want %q", step, file, b, err, want)
			}
		}
	}
	// No metadata file (bare local run): nothing set, still 204.
	if w := do(h, http.MethodPost, "/init", ""); w.Code != 204 {
		t.Fatalf("status %d", w.Code)
	}
	check("no metadata", "", "")

	write := func(s string) {
		if err := os.WriteFile(metaPath, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"sandbox_id":"cl-first","template_id":"tpl-a"}`)
	do(h, http.MethodPost, "/init", `{"envVars":{"X":"1"}}`)
	check("create", "cl-first", "tpl-a")

	// Restore: the host publishes a new id; an ignored (old) body still re-syncs.
	write(`{"sandbox_id":"cl-second","template_id":"tpl-a"}`)
	do(h, http.MethodPost, "/init", `{"timestamp":"2026-01-01T00:00:00Z"}`)
	do(h, http.MethodPost, "/init", `{"timestamp":"2025-01-01T00:00:00Z"}`)
	check("restore", "cl-second", "tpl-a")

	// Broken metadata: /init still succeeds and keeps the last identity.
	write(`{"sandbox_id":`)
	if w := do(h, http.MethodPost, "/init", ""); w.Code != 204 {
		t.Fatalf("status %d with broken metadata", w.Code)
	}
	check("broken", "cl-second", "tpl-a")

	// No temp files left behind.
	ents, err := os.ReadDir(runDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 2 {
		t.Fatalf("run dir has %d entries, want 2", len(ents))
	}

	// A rejected /init (token) changes nothing, identity included.
	write(`{"sandbox_id":"cl-third","template_id":"tpl-b"}`)
	tok := "t"
	if _, err := d.Apply(defaults.Update{AccessToken: &tok}, nil); err != nil {
		t.Fatal(err)
	}
	if w := do(h, http.MethodPost, "/init", `{"accessToken":"u"}`); w.Code != 401 {
		t.Fatalf("status %d, want 401", w.Code)
	}
	check("rejected", "cl-second", "tpl-a")
}

func TestInitMetadataSourceError(t *testing.T) {
	d := defaults.New(nil)
	src := &fakeMeta{m: metadata.Metadata{SandboxID: "cl-1"}}
	h := newHost(t, Config{Defaults: d, Metadata: src})
	do(h, http.MethodPost, "/init", "")
	if d.Env()[envSandboxID] != "cl-1" {
		t.Fatal("sandbox id not set")
	}
	src.err = os.ErrPermission
	src.m = metadata.Metadata{SandboxID: "cl-2"}
	if w := do(h, http.MethodPost, "/init", ""); w.Code != 204 {
		t.Fatalf("status %d", w.Code)
	}
	if d.Env()[envSandboxID] != "cl-1" {
		t.Fatal("a failed read changed the identity")
	}
}
