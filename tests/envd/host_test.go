package envd_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/internal/envd/auth"
	"github.com/wrenn/wrenn/internal/testutil"
)

func request(t *testing.T, e *env, method, path string, body []byte, hdr ...string) httpResult {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t, 20*time.Second), method, e.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return do(t, e, req)
}

func postInit(t *testing.T, e *env, body any, hdr ...string) httpResult {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return request(t, e, http.MethodPost, "/init", b, hdr...)
}

func TestHealth(t *testing.T) {
	e := startEnvd(t)
	r := request(t, e, http.MethodGet, "/health", nil)
	var body struct {
		Version string `json:"version"`
	}
	if r.StatusCode != 200 || json.Unmarshal(r.Body, &body) != nil || body.Version == "" {
		t.Fatalf("/health: %d %q", r.StatusCode, r.Body)
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("/health Cache-Control %q", r.Header.Get("Cache-Control"))
	}
	// h2c with prior knowledge on the same socket.
	resp, err := h2cClient().Get(e.URL + "/health")
	if err != nil {
		t.Fatalf("h2c /health: %v", err)
	}
	_ = resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
		t.Fatalf("h2c /health: %s %s", resp.Proto, resp.Status)
	}
}

func TestInit(t *testing.T) {
	e := startEnvd(t)
	u := testutil.CreateUser(t, testutil.RandomName("wrnt", 8))
	// The default user must be able to enter it: not under the root-only TempDir.
	workdir := filepath.Join(u.Home, "wd")
	if err := os.Mkdir(workdir, 0o755); err != nil {
		t.Fatal(err)
	}

	r := postInit(t, e, map[string]any{
		"envVars":     map[string]string{"WRN_A": "1", "WRN_B": "2"},
		"defaultUser": u.Name,
		"timestamp":   time.Now().UTC().Format(time.RFC3339Nano),
		"hyperloopIP": "ignored", "unknownField": true,
	})
	if r.StatusCode != http.StatusNoContent || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("/init: %d %q Cache-Control %q", r.StatusCode, r.Body, r.Header.Get("Cache-Control"))
	}
	res := run(t, e.proc, bash(`whoami; echo "$HOME $WRN_A $WRN_B"; pwd`))
	if want := u.Name + "\n" + u.Home + " 1 2\n" + u.Home + "\n"; res.stdout.String() != want {
		t.Fatalf("after /init: %q, want %q", res.stdout.String(), want)
	}
	// A per-command env overrides the global one.
	req := bash(`echo "$WRN_A"`)
	req.Process.Envs = map[string]string{"WRN_A": "override"}
	if res := run(t, e.proc, req); res.stdout.String() != "override\n" {
		t.Errorf("per-command env: %q", res.stdout.String())
	}

	envs := request(t, e, http.MethodGet, "/envs", nil)
	var m map[string]string
	if envs.StatusCode != 200 || json.Unmarshal(envs.Body, &m) != nil || m["WRN_A"] != "1" {
		t.Fatalf("/envs: %d %q", envs.StatusCode, envs.Body)
	}

	t.Run("stale timestamp is ignored", func(t *testing.T) {
		r := postInit(t, e, map[string]any{
			"envVars":   map[string]string{"WRN_A": "old"},
			"timestamp": "2000-01-01T00:00:00Z",
		})
		if r.StatusCode != http.StatusNoContent {
			t.Fatalf("/init: %d", r.StatusCode)
		}
		if res := run(t, e.proc, bash(`echo "$WRN_A"`)); res.stdout.String() != "1\n" {
			t.Errorf("stale /init applied: %q", res.stdout.String())
		}
	})
	t.Run("merge and default workdir", func(t *testing.T) {
		if r := postInit(t, e, map[string]any{"envVars": map[string]string{"WRN_C": "3"}, "defaultWorkdir": workdir}); r.StatusCode != 204 {
			t.Fatalf("/init: %d", r.StatusCode)
		}
		if res := run(t, e.proc, bash(`echo "$WRN_A$WRN_C"; pwd`)); res.stdout.String() != "13\n"+workdir+"\n" {
			t.Errorf("after merge: %q (stderr %q, err %v, end %v)", res.stdout.String(), res.stderr.String(), res.err, res.end)
		}
	})
	t.Run("empty body", func(t *testing.T) {
		if r := request(t, e, http.MethodPost, "/init", nil); r.StatusCode != 204 {
			t.Errorf("empty /init: %d %q", r.StatusCode, r.Body)
		}
	})
	t.Run("invalid JSON", func(t *testing.T) {
		httpErrorCode(t, request(t, e, http.MethodPost, "/init", []byte(`{"envVars":`)), 400)
		httpErrorCode(t, request(t, e, http.MethodPost, "/init", []byte(`{"envVars":"notamap"}`)), 400)
	})
	e.requireHealthy(t)
}

func TestAccessToken(t *testing.T) {
	e := startEnvd(t)
	const token = "secret-token"
	if r := postInit(t, e, map[string]any{"accessToken": token}); r.StatusCode != 204 {
		t.Fatalf("/init with token: %d %q", r.StatusCode, r.Body)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "f.txt")
	writeFile(t, file, "signed")

	t.Run("routes need the header", func(t *testing.T) {
		tests := []struct {
			name   string
			method string
			path   string
			ctype  string
			body   []byte
			open   int // status with the token
		}{
			{"envs", http.MethodGet, "/envs", "", nil, 200},
			{"metrics", http.MethodGet, "/metrics", "", nil, 200},
			{"unary RPC", http.MethodPost, "/process.Process/List", "application/json", []byte(`{}`), 200},
			{"files/compose", http.MethodPost, "/files/compose", "application/json", []byte(`{}`), -1},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				hdr := []string{}
				if tt.ctype != "" {
					hdr = append(hdr, "Content-Type", tt.ctype)
				}
				r := request(t, e, tt.method, tt.path, tt.body, hdr...)
				if r.StatusCode != 401 {
					t.Fatalf("without token: %d %q", r.StatusCode, r.Body)
				}
				if strings.HasPrefix(tt.path, "/process.") {
					var ce struct{ Code string }
					if json.Unmarshal(r.Body, &ce) != nil || ce.Code != "unauthenticated" {
						t.Errorf("Connect error body %q", r.Body)
					}
				} else {
					httpErrorCode(t, r, 401)
				}
				if tt.open > 0 {
					if r := request(t, e, tt.method, tt.path, tt.body, append(hdr, auth.Header, token)...); r.StatusCode != tt.open {
						t.Errorf("with token: %d %q", r.StatusCode, r.Body)
					}
				}
				if r := request(t, e, tt.method, tt.path, tt.body, append(hdr, auth.Header, "wrong")...); r.StatusCode != 401 {
					t.Errorf("wrong token: %d", r.StatusCode)
				}
			})
		}
	})
	t.Run("stream RPC", func(t *testing.T) {
		status, frames := rawStream(t, e, "/process.Process/Start", envelope(0, []byte(`{"process":{"cmd":"/bin/true"}}`)))
		if status != 200 || streamError(t, frames) != "unauthenticated" {
			t.Fatalf("Start without token: %d %v", status, frames)
		}
		res := run(t, e.proc, bash("echo ok"), auth.Header, token)
		if res.stdout.String() != "ok\n" {
			t.Errorf("Start with token: %q %v", res.stdout.String(), res.err)
		}
		r := run(t, e.proc, bash("echo ok"))
		wantCode(t, r.err, connect.CodeUnauthenticated)
	})
	t.Run("exempt routes", func(t *testing.T) {
		if r := request(t, e, http.MethodGet, "/health", nil); r.StatusCode != 200 {
			t.Errorf("/health: %d", r.StatusCode)
		}
		if r := request(t, e, http.MethodPost, "/snapshot/prepare", nil); r.StatusCode != 204 {
			t.Errorf("/snapshot/prepare: %d", r.StatusCode)
		}
		if r := postInit(t, e, map[string]any{"accessToken": token}); r.StatusCode != 204 {
			t.Errorf("/init re-sending the current token: %d", r.StatusCode)
		}
	})
	t.Run("files header or signature", func(t *testing.T) {
		if r := download(t, e, file, ""); r.StatusCode != 401 {
			t.Errorf("no header, no signature: %d", r.StatusCode)
		}
		if r := download(t, e, file, "", auth.Header, token); r.StatusCode != 200 || string(r.Body) != "signed" {
			t.Errorf("with header: %d", r.StatusCode)
		}
		sig := auth.Signature(file, "read", "", token, 0)
		signed := func(sig string, exp int64, hdr ...string) int {
			q := url.Values{"path": {file}, "signature": {sig}}
			if exp != 0 {
				q.Set("signature_expiration", strconv.FormatInt(exp, 10))
			}
			return request(t, e, http.MethodGet, "/files?"+q.Encode(), nil, hdr...).StatusCode
		}
		if got := signed(sig, 0); got != 200 {
			t.Errorf("valid signature: %d", got)
		}
		if got := signed(sig, 0, auth.Header, "wrong"); got != 401 {
			t.Errorf("valid signature with a wrong header: %d", got)
		}
		if got := signed(sig+"x", 0); got != 401 {
			t.Errorf("altered signature: %d", got)
		}
		future := time.Now().Add(time.Hour).Unix()
		if got := signed(auth.Signature(file, "read", "", token, future), future); got != 200 {
			t.Errorf("unexpired signature: %d", got)
		}
		past := time.Now().Add(-time.Minute).Unix()
		if got := signed(auth.Signature(file, "read", "", token, past), past); got != 401 {
			t.Errorf("expired signature: %d", got)
		}
		// A read signature does not allow writing.
		q := url.Values{"path": {filepath.Join(dir, "w.txt")}, "signature": {auth.Signature(filepath.Join(dir, "w.txt"), "read", "", token, 0)}}
		req, _ := http.NewRequestWithContext(ctxT(t, 30*time.Second), http.MethodPost, e.URL+"/files?"+q.Encode(), strings.NewReader("x"))
		req.Header.Set("Content-Type", "application/octet-stream")
		if r := do(t, e, req); r.StatusCode != 401 {
			t.Errorf("upload with a read signature: %d", r.StatusCode)
		}
		q.Set("signature", auth.Signature(filepath.Join(dir, "w.txt"), "write", "", token, 0))
		req, _ = http.NewRequestWithContext(ctxT(t, 30*time.Second), http.MethodPost, e.URL+"/files?"+q.Encode(), strings.NewReader("x"))
		req.Header.Set("Content-Type", "application/octet-stream")
		if r := do(t, e, req); r.StatusCode != 200 {
			t.Errorf("upload with a write signature: %d %q", r.StatusCode, r.Body)
		}
	})
	t.Run("init without the token is refused", func(t *testing.T) {
		// A process inside the sandbox must not re-initialise envd (docs/security.md).
		for _, body := range []map[string]any{
			{"envVars": map[string]string{"WRN_Y": "1"}, "defaultUser": "nobody", "defaultWorkdir": "/"},
			{},
		} {
			if r := postInit(t, e, body); r.StatusCode != 401 {
				t.Errorf("/init %v without the token: %d", body, r.StatusCode)
			}
		}
		if r := postInit(t, e, map[string]any{"defaultUser": "nobody"}, auth.Header, "wrong"); r.StatusCode != 401 {
			t.Errorf("/init with a wrong token: %d", r.StatusCode)
		}
		envs := request(t, e, http.MethodGet, "/envs", nil, auth.Header, token)
		if strings.Contains(string(envs.Body), "WRN_Y") {
			t.Error("a refused /init applied its envVars")
		}
		if res := run(t, e.proc, bash("id -un"), auth.Header, token); res.stdout.String() == "nobody\n" {
			t.Error("a refused /init changed the default user")
		}
		if r := postInit(t, e, map[string]any{"envVars": map[string]string{"WRN_Z": "1"}}, auth.Header, token); r.StatusCode != 204 {
			t.Errorf("/init with the token: %d", r.StatusCode)
		}
	})
	t.Run("changing the token needs the current one", func(t *testing.T) {
		if r := postInit(t, e, map[string]any{"accessToken": "new", "envVars": map[string]string{"WRN_X": "1"}}); r.StatusCode != 401 {
			t.Fatalf("change without proof: %d", r.StatusCode)
		}
		envs := request(t, e, http.MethodGet, "/envs", nil, auth.Header, token)
		if strings.Contains(string(envs.Body), "WRN_X") {
			t.Error("a refused /init applied its envVars")
		}
		if r := postInit(t, e, map[string]any{"accessToken": "new"}, auth.Header, token); r.StatusCode != 204 {
			t.Fatalf("change with proof: %d", r.StatusCode)
		}
		if r := request(t, e, http.MethodGet, "/envs", nil, auth.Header, "new"); r.StatusCode != 200 {
			t.Errorf("new token refused: %d", r.StatusCode)
		}
		if r := postInit(t, e, map[string]any{"accessToken": ""}, auth.Header, "new"); r.StatusCode != 204 {
			t.Fatalf("clear with proof: %d", r.StatusCode)
		}
		if r := request(t, e, http.MethodGet, "/envs", nil); r.StatusCode != 200 {
			t.Errorf("after clearing the token: %d", r.StatusCode)
		}
	})
	e.requireHealthy(t)
}

func TestMetricsAndSnapshot(t *testing.T) {
	e := startEnvd(t)
	r := request(t, e, http.MethodGet, "/metrics", nil)
	var m map[string]float64
	if r.StatusCode != 200 || json.Unmarshal(r.Body, &m) != nil {
		t.Fatalf("/metrics: %d %q", r.StatusCode, r.Body)
	}
	for _, k := range []string{"ts", "cpu_count", "cpu_used_pct", "mem_total", "mem_used", "mem_cache", "disk_used", "disk_total"} {
		if _, ok := m[k]; !ok {
			t.Errorf("/metrics lacks %q: %s", k, r.Body)
		}
	}
	if m["cpu_count"] < 1 || m["mem_total"] <= m["mem_used"] || m["disk_total"] < m["disk_used"] || m["cpu_used_pct"] < 0 || m["cpu_used_pct"] > 100 {
		t.Errorf("implausible metrics %v", m)
	}
	if now := float64(time.Now().Unix()); m["ts"] < now-60 || m["ts"] > now+60 {
		t.Errorf("ts %v is not now (%v)", m["ts"], now)
	}
	for range 2 {
		r := request(t, e, http.MethodPost, "/snapshot/prepare", nil)
		if r.StatusCode != 204 || r.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("/snapshot/prepare: %d Cache-Control %q", r.StatusCode, r.Header.Get("Cache-Control"))
		}
	}
	// Processes survive a prepare, and envd keeps serving.
	if res := run(t, e.proc, bash("echo alive")); res.stdout.String() != "alive\n" {
		t.Errorf("after prepare: %q %v", res.stdout.String(), res.err)
	}
	e.requireHealthy(t)
}
