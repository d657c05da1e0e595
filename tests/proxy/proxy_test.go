// Package proxy_test drives the control plane's port proxy (docs/api.md, Port proxy) end to end: a real
// wrenn-cp with the proxy domain localhost, a real agent and a real capsule running web servers,
// reached by host name ({port}-{id}.localhost:<cp port>) and by E2B's E2b-Sandbox-Id/-Port headers,
// over HTTP/1.1, h2c and WebSocket; and the unmodified e2b npm SDK reaching the capsule's envd with
// E2B_SANDBOX_URL at the control plane (tests/e2bjs/proxy.test.mjs).
package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
	"github.com/wrenn/wrenn/internal/testutil/platform"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// capsule is a running capsule with the echo server on port 8000 and busybox httpd on 8001.
type capsule struct {
	cp        *platform.ControlPlane
	id        string // API form, cl-…
	envdToken string
}

func startCapsule(t *testing.T) *capsule {
	t.Helper()
	p := platform.New(t, 1, "--proxy-domain", "localhost")
	p.AddHost(t, false)
	key := cptest.Key(p.Key)
	base := p.URL()
	c := p.CreateCapsule(t, base, key)
	t.Cleanup(func() {
		if res := cptest.Call(t, base, "DELETE", "/v1/capsules/"+c.ID, key, nil); res.Status != 204 {
			t.Errorf("destroy capsule: %d %s", res.Status, res.Body)
		}
	})
	res := cptest.Call(t, base, "GET", "/v1/capsules/"+c.ID, key, nil)
	var full struct {
		EnvdAccessToken string `json:"envd_access_token"`
	}
	res.JSON(t, &full)
	if full.EnvdAccessToken == "" {
		t.Fatalf("capsule without envd_access_token: %s", res.Body)
	}

	bin, err := os.ReadFile(testutil.BuildBinary(t, "./tests/proxy/echoserver"))
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("path", "/tmp/echoserver")
	fw, _ := mw.CreateFormFile("file", "echoserver")
	_, _ = fw.Write(bin)
	_ = mw.Close()
	if res := cptest.Call(t, base, "POST", "/v1/capsules/"+c.ID+"/files/write", key, typed{&body, mw.FormDataContentType()}); res.Status != 204 {
		t.Fatalf("write echoserver: %d %s", res.Status, res.Body)
	}
	exec := func(background bool, cmd string, args ...string) {
		t.Helper()
		res := cptest.Call(t, base, "POST", "/v1/capsules/"+c.ID+"/exec", key, map[string]any{"cmd": cmd, "args": args, "background": background})
		if res.Status != 200 && res.Status != 202 {
			t.Fatalf("exec %s %v: %d %s", cmd, args, res.Status, res.Body)
		}
		if !background && !bytes.Contains(res.Body, []byte(`"exit_code":0`)) {
			t.Fatalf("exec %s %v: %s", cmd, args, res.Body)
		}
	}
	exec(false, "/bin/sh", "-c", "chmod +x /tmp/echoserver && mkdir -p /tmp/www && echo from-httpd > /tmp/www/index.html"+
		// The SDK runs commands with /bin/bash -l -c; minimal has busybox sh only.
		` && { [ -e /bin/bash ] || { printf '#!/bin/sh\nexec /bin/sh "$@"\n' >/bin/bash && chmod +x /bin/bash; }; }`)
	exec(true, "/tmp/echoserver", ":8000")
	exec(true, "httpd", "-f", "-p", "8001", "-h", "/tmp/www")
	return &capsule{cp: p.CPs[0], id: c.ID, envdToken: full.EnvdAccessToken}
}

// typed is a request body with its Content-Type (cptest.Call).
type typed struct {
	io.Reader
	ctype string
}

func (b typed) ContentType() string { return b.ctype }

// route says how a request names its capsule port: by Host or by E2B headers.
type route func(req *http.Request, port int)

func (c *capsule) byHost(id string) route {
	return func(req *http.Request, port int) {
		req.Host = fmt.Sprintf("%d-%s.localhost:%d", port, id, c.cp.Port)
	}
}

func byHeaders(id string) route {
	return func(req *http.Request, port int) {
		req.Header.Set("E2b-Sandbox-Id", id)
		req.Header.Set("E2b-Sandbox-Port", strconv.Itoa(port))
	}
}

// get sends GET path to the control plane, routed to port, with client cl.
func (c *capsule) get(cl *http.Client, r route, port int, path string, hdr ...string) (*http.Response, error) {
	req, err := http.NewRequest("GET", c.cp.URL+path, nil)
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	r(req, port)
	return cl.Do(req)
}

func (c *capsule) getBody(cl *http.Client, r route, port int, path string, hdr ...string) (int, string, error) {
	res, err := c.get(cl, r, port, path, hdr...)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

func TestPortProxy(t *testing.T) {
	c := startCapsule(t)
	h1 := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{}}
	dashFree := strings.Replace(c.id, "-", "", 1)
	routes := map[string]route{
		"host":               c.byHost(c.id),
		"host, dash-free id": c.byHost(dashFree),
		"headers":            byHeaders(c.id),
		"headers, dash-free": byHeaders(dashFree),
	}

	// The servers start in the background: wait for both through the proxy.
	platform.Eventually(t, 120*time.Second, "web servers through the proxy", func() error {
		for port, want := range map[int]string{8000: "hello GET /hello HTTP/1.1\n", 8001: "from-httpd\n"} {
			path := "/hello"
			if port == 8001 {
				path = "/"
			}
			code, body, err := c.getBody(h1, c.byHost(c.id), port, path)
			if err != nil || code != 200 || body != want {
				return fmt.Errorf("port %d: %d %q %v", port, code, body, err)
			}
		}
		return nil
	})

	t.Run("http1", func(t *testing.T) {
		for name, r := range routes {
			if code, body, err := c.getBody(h1, r, 8001, "/"); err != nil || code != 200 || body != "from-httpd\n" {
				t.Errorf("%s: httpd: %d %q %v", name, code, body, err)
			}
			if code, body, err := c.getBody(h1, r, 8000, "/hello"); err != nil || code != 200 || body != "hello GET /hello HTTP/1.1\n" {
				t.Errorf("%s: echoserver: %d %q %v", name, code, body, err)
			}
		}
		// Nobody listens on 8002: the agent's 502.
		if code, body, err := c.getBody(h1, byHeaders(c.id), 8002, "/"); err != nil || code != 502 {
			t.Errorf("closed port: %d %q %v", code, body, err)
		}
	})

	t.Run("h2c", func(t *testing.T) {
		// A Connect unary call to envd over h2c, as the SDKs' Connect clients may send it.
		tr2 := &http.Transport{Protocols: new(http.Protocols)}
		tr2.Protocols.SetUnencryptedHTTP2(true)
		defer tr2.CloseIdleConnections()
		req, _ := http.NewRequest("POST", c.cp.URL+"/filesystem.Filesystem/Stat", strings.NewReader(`{"path":"/tmp/echoserver"}`))
		byHeaders(dashFree)(req, 49983)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Connect-Protocol-Version", "1")
		req.Header.Set("X-Access-Token", c.envdToken)
		res, err := (&http.Client{Timeout: 60 * time.Second, Transport: tr2}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || res.ProtoMajor != 2 || !strings.Contains(string(b), `"name":"echoserver"`) {
			t.Errorf("Connect Stat over h2c: %s %d %s", res.Proto, res.StatusCode, b)
		}

		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		defer tr.CloseIdleConnections()
		h2c := &http.Client{Timeout: 60 * time.Second, Transport: tr}
		for name, r := range routes {
			res, err := c.get(h2c, r, 8000, "/hello")
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			b, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil || res.StatusCode != 200 || res.ProtoMajor != 2 || string(b) != "hello GET /hello HTTP/1.1\n" {
				t.Errorf("%s: %s %d %q %v", name, res.Proto, res.StatusCode, b, err)
			}
		}
	})

	t.Run("websocket", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		url := "ws" + strings.TrimPrefix(c.cp.URL, "http") + "/ws"
		for name, opts := range map[string]*websocket.DialOptions{
			"host":    {Host: fmt.Sprintf("8000-%s.localhost:%d", c.id, c.cp.Port)},
			"headers": {HTTPHeader: http.Header{"E2b-Sandbox-Id": {dashFree}, "E2b-Sandbox-Port": {"8000"}}},
		} {
			ws, _, err := websocket.Dial(ctx, url, opts)
			if err != nil {
				t.Fatalf("%s: dial: %v", name, err)
			}
			for i := range 3 {
				msg := fmt.Sprintf("%s %d", name, i)
				if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
					t.Fatalf("%s: write: %v", name, err)
				}
				if _, b, err := ws.Read(ctx); err != nil || string(b) != "echo:"+msg {
					t.Fatalf("%s: read %q %v", name, b, err)
				}
			}
			_ = ws.Close(websocket.StatusNormalClosure, "")
		}
	})

	// The first chunk arrives while the capsule's handler is still waiting: nothing buffers it.
	t.Run("streaming", func(t *testing.T) {
		res, err := c.get(h1, byHeaders(c.id), 8000, "/stream")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		rd := bufio.NewReader(res.Body)
		if line, err := rd.ReadString('\n'); err != nil || line != "first\n" {
			t.Fatalf("first chunk: %q %v", line, err)
		}
		if code, body, err := c.getBody(h1, c.byHost(c.id), 8000, "/release"); err != nil || code != 200 {
			t.Fatalf("release: %d %q %v", code, body, err)
		}
		if rest, err := io.ReadAll(rd); err != nil || string(rest) != "second\n" {
			t.Fatalf("rest: %q %v", rest, err)
		}
	})

	// envd's port needs the capsule's envd access token, whichever way it is addressed.
	t.Run("envd", func(t *testing.T) {
		for name, r := range routes {
			if code, body, err := c.getBody(h1, r, 49983, "/health"); err != nil || code != 401 {
				t.Errorf("%s: no token: %d %q %v", name, code, body, err)
			}
			if code, body, err := c.getBody(h1, r, 49983, "/health", "X-Access-Token", c.envdToken); err != nil || code/100 != 2 || strings.Contains(body, `"status"`) {
				t.Errorf("%s: with token: %d %q %v", name, code, body, err)
			}
		}
		// No port header: envd's port (E2B's default).
		req, _ := http.NewRequest("GET", c.cp.URL+"/health", nil)
		req.Header.Set("E2b-Sandbox-Id", c.id)
		req.Header.Set("X-Access-Token", c.envdToken)
		res, err := h1.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode/100 != 2 || bytes.Contains(b, []byte(`"status"`)) { // the control plane's own /health has status
			t.Errorf("envd by id header alone: %d %s", res.StatusCode, b)
		}
	})

	// The unmodified E2B SDK with E2B_SANDBOX_URL at the control plane (header routing).
	t.Run("e2b sdk", func(t *testing.T) {
		runSDK(t, c, dashFree)
	})

	// Requests without the headers or a capsule host stay the API's.
	if code, body, err := c.getBody(h1, func(*http.Request, int) {}, 0, "/health"); err != nil || code != 200 || !strings.Contains(body, `"ok"`) {
		t.Errorf("API /health: %d %q %v", code, body, err)
	}
}

// runSDK runs tests/e2bjs/proxy.test.mjs (the e2b npm SDK) against capsule c, named by id.
func runSDK(t *testing.T, c *capsule, id string) {
	node, err := exec.LookPath("node")
	if err != nil {
		testutil.SkipUnlessCI(t, "node is not installed: %v", err)
	}
	dir := filepath.Join(testutil.ModuleRoot(t), "tests", "e2bjs")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "e2b")); err != nil {
		npm, err := exec.LookPath("npm")
		if err != nil {
			testutil.SkipUnlessCI(t, "npm is not installed: %v", err)
		}
		cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci: %v\n%s", err, out)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 180*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "proxy.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "WRENN_CP_URL="+c.cp.URL, "WRENN_SANDBOX_ID="+id, "WRENN_ENVD_TOKEN="+c.envdToken, "NO_COLOR=1")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("node --test proxy.test.mjs: %v", err)
	}
}
