package rpc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wrenn/wrenn/internal/hostagent/capsules"
	"github.com/wrenn/wrenn/internal/hostagent/rpc"
)

const (
	proxyRunning = "cl-0000000000000000000000run"
	proxyPaused  = "cl-00000000000000000000paused"
	proxyToken   = "cl-0000000000000000000token1"
)

// capsuleMap is the agent's view for the proxy: id → info.
type capsuleMap map[string]capsules.Info

func (m capsuleMap) Info(id string) (capsules.Info, error) {
	i, ok := m[id]
	if !ok {
		return capsules.Info{}, capsules.ErrNotFound
	}
	return i, nil
}

// seen is what the upstream received.
type seen struct {
	Method, Path, RawPath, Query, Host, XFF, XFH, Body string
}

type proxyFixture struct {
	proxy    *rpc.Proxy
	url      string // the agent's base URL
	port     string // the upstream's port in the "capsule"
	release  chan struct{}
	entered  chan struct{}
	upstream *httptest.Server
}

func newProxyFixture(t *testing.T) *proxyFixture {
	t.Helper()
	f := &proxyFixture{release: make(chan struct{}), entered: make(chan struct{}, 4)}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo:"), b...)); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		f.entered <- struct{}{}
		select {
		case <-f.release:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_ = json.NewEncoder(w).Encode(seen{
			Method: r.Method, Path: r.URL.Path, RawPath: r.URL.RawPath, Query: r.URL.RawQuery, Host: r.Host,
			XFF: r.Header.Get("X-Forwarded-For"), XFH: r.Header.Get("X-Forwarded-Host"), Body: string(b),
		})
	})
	f.upstream = httptest.NewServer(mux)
	t.Cleanup(func() {
		select {
		case <-f.release:
		default:
			close(f.release)
		}
		f.upstream.Close()
	})
	_, f.port, _ = net.SplitHostPort(f.upstream.Listener.Addr().String())
	f.proxy = rpc.NewProxy(slog.New(slog.NewTextHandler(io.Discard, nil)))
	caps := capsuleMap{
		proxyRunning: {ID: proxyRunning, Status: capsules.StatusRunning, HostIP: "127.0.0.1"},
		proxyPaused:  {ID: proxyPaused, Status: capsules.StatusPaused},
		proxyToken:   {ID: proxyToken, Status: capsules.StatusRunning, HostIP: "127.0.0.1", EnvdAccessToken: "envd-tok"},
	}
	srv := httptest.NewServer(f.proxy.Wrap(caps, http.NotFoundHandler()))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func do(t *testing.T, method, url, host, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func errorCode(t *testing.T, body string) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return e.Error.Code
}

func TestProxyForwardsRequests(t *testing.T) {
	f := newProxyFixture(t)
	base := f.url + "/proxy/" + proxyRunning + "/" + f.port
	for _, tc := range []struct {
		method, path, body string
		want               seen
	}{
		{"GET", "/a/b?x=1&y=%20z", "", seen{Method: "GET", Path: "/a/b", Query: "x=1&y=%20z"}},
		{"POST", "/submit", "payload", seen{Method: "POST", Path: "/submit", Body: "payload"}},
		{"GET", "", "", seen{Method: "GET", Path: "/"}},
		{"GET", "/", "", seen{Method: "GET", Path: "/"}},
		{"DELETE", "/a%2Fb/c", "", seen{Method: "DELETE", Path: "/a/b/c", RawPath: "/a%2Fb/c"}},
	} {
		status, body := do(t, tc.method, base+tc.path, "8080-"+proxyRunning+".wrenn.test", tc.body)
		if status != http.StatusOK {
			t.Fatalf("%s %s: %d %s", tc.method, tc.path, status, body)
		}
		var got seen
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		tc.want.Host = "8080-" + proxyRunning + ".wrenn.test"
		tc.want.XFH = tc.want.Host
		tc.want.XFF = "203.0.113.7, 127.0.0.1"
		if got != tc.want {
			t.Errorf("%s %s: upstream saw %+v, want %+v", tc.method, tc.path, got, tc.want)
		}
	}
}

// TestProxyEnvdPortNeedsToken: port 49983 needs the capsule's envd access token (docs/security.md).
func TestProxyEnvdPortNeedsToken(t *testing.T) {
	f := newProxyFixture(t)
	for _, tok := range []string{"", "wrong", "envd-to"} {
		req, _ := http.NewRequest(http.MethodGet, f.url+"/proxy/"+proxyToken+"/49983/health", nil)
		if tok != "" {
			req.Header.Set("X-Access-Token", tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || errorCode(t, string(b)) != "unauthorized" {
			t.Errorf("token %q: %d %s, want 401 unauthorized", tok, resp.StatusCode, b)
		}
	}
	// Host-only endpoints stay 403 whatever the token.
	if st, b := do(t, http.MethodPost, f.url+"/proxy/"+proxyToken+"/49983/init", "", ""); st != 403 {
		t.Errorf("/init: %d %s", st, b)
	}
}

func TestProxyRefusals(t *testing.T) {
	f := newProxyFixture(t)
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, closed, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	for _, tc := range []struct {
		path   string
		status int
		code   string
	}{
		{"/proxy/" + proxyRunning + "/abc/", 400, "invalid_request"},
		{"/proxy/" + proxyRunning + "/0/", 400, "invalid_request"},
		{"/proxy/" + proxyRunning + "/65536/", 400, "invalid_request"},
		{"/proxy/" + proxyRunning + "/+80/", 400, "invalid_request"},
		{"/proxy/" + proxyRunning + "//x", 400, "invalid_request"},
		{"/proxy/" + proxyRunning, 400, "invalid_request"},
		{"/proxy/cl-zzzzzzzzzzzzzzzzzzzzzzzzz/" + f.port + "/", 503, "host_unavailable"},
		{"/proxy/not-an-id/" + f.port + "/", 503, "host_unavailable"},
		{"/proxy/" + proxyPaused + "/" + f.port + "/", 503, "host_unavailable"},
		{"/proxy/" + proxyRunning + "/49983/init", 403, "forbidden"},
		{"/proxy/" + proxyRunning + "/49983/snapshot/prepare", 403, "forbidden"},
		{"/proxy/" + proxyRunning + "/49983//init", 403, "forbidden"},
		{"/proxy/" + proxyRunning + "/49983/init/", 403, "forbidden"},
		{"/proxy/" + proxyRunning + "/49983/x/../init", 403, "forbidden"},
		{"/proxy/" + proxyRunning + "/49983/snapshot%2Fprepare", 403, "forbidden"},
		{"/proxy/" + proxyRunning + "/49983/%69nit", 403, "forbidden"},
		{"/proxy/" + proxyRunning + "/" + closed + "/", 502, "agent_error"},
	} {
		for _, method := range []string{"GET", "POST"} {
			status, body := do(t, method, f.url+tc.path, "", "")
			if status != tc.status || errorCode(t, body) != tc.code {
				t.Errorf("%s %s: %d %s, want %d %s", method, tc.path, status, body, tc.status, tc.code)
			}
		}
	}
}

func TestProxyWebSocket(t *testing.T) {
	f := newProxyFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wsURL := "ws" + strings.TrimPrefix(f.url, "http") + "/proxy/" + proxyRunning + "/" + f.port + "/ws"
	c, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for i := range 3 {
		msg := fmt.Sprintf("hello %d", i)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != "echo:"+msg {
			t.Fatalf("got %q", b)
		}
	}
	if n := f.proxy.Connections(proxyRunning); n != 1 {
		t.Fatalf("%d tracked connections", n)
	}

	// Drain (pause or destroy) closes the upgraded connection.
	f.proxy.Drain(proxyRunning)
	if _, _, err := c.Read(ctx); err == nil {
		t.Fatal("WebSocket still open after Drain")
	}
	waitUntil(t, func() bool { return f.proxy.Connections(proxyRunning) == 0 })
}

func TestProxyDrainAnswersInFlightRequests(t *testing.T) {
	f := newProxyFixture(t)
	type result struct {
		status int
		body   string
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Get(f.url + "/proxy/" + proxyRunning + "/" + f.port + "/slow")
		if err != nil {
			res <- result{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		res <- result{resp.StatusCode, string(b)}
	}()
	<-f.entered
	f.proxy.Drain(proxyRunning)
	select {
	case r := <-res:
		if r.status != http.StatusServiceUnavailable || errorCode(t, r.body) != "host_unavailable" {
			t.Fatalf("drained request: %d %s", r.status, r.body)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("request not drained")
	}
	// Others are untouched.
	f.proxy.Drain("cl-other")
	if status, body := do(t, "GET", f.url+"/proxy/"+proxyRunning+"/"+f.port+"/after", "", ""); status != 200 {
		t.Fatalf("after drain: %d %s", status, body)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	var once sync.Once
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			once.Do(func() { t.Fatal("condition not met in 30 s") })
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
