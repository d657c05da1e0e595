package portproxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/portproxy"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

type fakeStore map[uuid.UUID]db.Capsule

func (f fakeStore) GetCapsuleByID(_ context.Context, id uuid.UUID) (db.Capsule, error) {
	c, ok := f[id]
	if !ok {
		return db.Capsule{}, pgx.ErrNoRows
	}
	return c, nil
}

// fakeTokens holds envd tokens of capsules by id.
type fakeTokens map[uuid.UUID]string

func (f fakeTokens) EnvdToken(c db.Capsule) (string, error) { return f[c.ID], nil }

// TrafficToken: every secure capsule's is trafficToken.
func (f fakeTokens) TrafficToken(c db.Capsule) (string, error) {
	if !c.Secure {
		return "", nil
	}
	return trafficToken, nil
}

// fakeTransports reaches one agent (the upstream) for host goodHost.
type fakeTransports struct {
	goodHost uuid.UUID
	base     string
	rt       http.RoundTripper
}

func (f fakeTransports) Transport(_ context.Context, host uuid.UUID) (string, http.RoundTripper, error) {
	if host != f.goodHost {
		return "", nil, errors.New("host offline")
	}
	return f.base, f.rt, nil
}

// seen is what the agent received.
type seen struct {
	Method, Path, RawPath, Query, Host, XFF, XFH, XFP, Body, Proto string
}

type fixture struct {
	front                    *httptest.Server // the control plane
	running, paused, offline string           // capsule ids
	secure                   string           // a running secure capsule's id
}

const (
	domain       = "wrenn.test"
	envdToken    = "envd-token-of-the-running-capsule"
	trafficToken = "traffic-token-of-the-secure-capsule"
)

func newFixture(t *testing.T) *fixture {
	t.Helper()
	// The agent: TLS with HTTP/2, like the real one, a WebSocket echo and an echo of the request.
	// No ServeMux: like the real agent's proxy it must not clean paths.
	wsEcho := func(w http.ResponseWriter, r *http.Request) {
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
	}
	agentHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/ws") {
			wsEcho(w, r)
			return
		}
		b, _ := io.ReadAll(r.Body)
		_ = json.NewEncoder(w).Encode(seen{
			Method: r.Method, Path: r.URL.Path, RawPath: r.URL.RawPath, Query: r.URL.RawQuery, Host: r.Host,
			XFF: r.Header.Get("X-Forwarded-For"), XFH: r.Header.Get("X-Forwarded-Host"),
			XFP: r.Header.Get("X-Forwarded-Proto"), Body: string(b), Proto: r.Proto,
		})
	})
	agent := httptest.NewUnstartedServer(agentHandler)
	agent.EnableHTTP2 = true
	agent.StartTLS()
	t.Cleanup(agent.Close)
	tr := agent.Client().Transport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = true
	t.Cleanup(tr.CloseIdleConnections)

	host, otherHost := uuid.New(), uuid.New()
	running, paused, offline := uuid.New(), uuid.New(), uuid.New()
	secure := uuid.New()
	st := fakeStore{
		secure:  {ID: secure, Status: "running", HostID: &host, Secure: true},
		running: {ID: running, Status: "running", HostID: &host},
		paused:  {ID: paused, Status: "paused", HostID: &host},
		offline: {ID: offline, Status: "running", HostID: &otherHost},
	}
	p, err := portproxy.New(portproxy.Config{
		Store: st, Transports: fakeTransports{goodHost: host, base: agent.URL, rt: tr}, Domain: domain,
		Tokens: fakeTokens{running: envdToken},
		Log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "next") })
	front := httptest.NewServer(p.Middleware(next))
	t.Cleanup(front.Close)
	return &fixture{
		front:   front,
		running: ids.Capsule.Format(running), paused: ids.Capsule.Format(paused), offline: ids.Capsule.Format(offline),
		secure: ids.Capsule.Format(secure),
	}
}

func (f *fixture) do(t *testing.T, method, host, path, body string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.front.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	req.Host = host
	req.Header.Set("X-Forwarded-For", "198.51.100.1") // a client's claim: not trusted
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestForwardsToTheCapsulesAgent(t *testing.T) {
	f := newFixture(t)
	host := "8080-" + f.running + "." + domain
	for _, tc := range []struct {
		method, host, path, body string
		want                     seen
	}{
		{"GET", host, "/a/b?x=1&y=%20z", "", seen{Path: "/a/b", Query: "x=1&y=%20z"}},
		{"POST", host, "/submit", "payload", seen{Path: "/submit", Body: "payload"}},
		{"PUT", host + ":8443", "/", "", seen{Path: "/"}},
		{"GET", strings.ToUpper(host), "/a%2Fb", "", seen{Path: "/a/b", RawPath: "/a%2Fb"}},
		{"DELETE", host + ".", "/x/../y", "", seen{Path: "/x/../y"}},
	} {
		status, body := f.do(t, tc.method, tc.host, tc.path, tc.body)
		if status != 200 {
			t.Fatalf("%s %s%s: %d %s", tc.method, tc.host, tc.path, status, body)
		}
		var got seen
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		want := tc.want
		want.Method = tc.method
		want.Path = "/proxy/" + f.running + "/8080" + want.Path
		if want.RawPath != "" {
			want.RawPath = "/proxy/" + f.running + "/8080" + want.RawPath
		}
		want.Host, want.XFH = tc.host, tc.host
		want.XFF, want.XFP, want.Proto = "127.0.0.1", "http", "HTTP/2.0"
		if got != want {
			t.Errorf("%s %s%s: agent saw\n%+v, want\n%+v", tc.method, tc.host, tc.path, got, want)
		}
	}
}

func TestOtherHostsGoToNext(t *testing.T) {
	f := newFixture(t)
	for _, host := range []string{
		domain, "api." + domain, "www." + domain, "8080-" + f.running + ".other.test",
		"a.8080-" + f.running + "." + domain, "8080-" + f.running, "127.0.0.1", "8080-notacapsule." + domain,
	} {
		if status, body := f.do(t, "GET", host, "/v1/x", ""); status != 200 || body != "next" {
			t.Errorf("%s: %d %s, want next", host, status, body)
		}
	}
}

func TestRefusals(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		label  string
		status int
		code   string
	}{
		{"0-" + f.running, 400, apierr.CodeInvalidRequest},
		{"65536-" + f.running, 400, apierr.CodeInvalidRequest},
		{"abc-" + f.running, 400, apierr.CodeInvalidRequest},
		{"080-" + f.running, 400, apierr.CodeInvalidRequest},
		{"-" + f.running, 400, apierr.CodeInvalidRequest},
		{"8080-cl-short", 400, apierr.CodeInvalidRequest},
		{"8080-cl" + strings.Repeat("z", ids.Len), 400, apierr.CodeInvalidRequest},
		{"8080-cl--" + f.running[3:], 400, apierr.CodeInvalidRequest},
		{"8080-" + ids.Capsule.Format(uuid.New()), 404, apierr.CodeNotFound},
		{"8080-" + f.paused, 503, apierr.CodeHostUnavailable},
		{"8080-" + f.offline, 503, apierr.CodeHostUnavailable},
	} {
		status, body := f.do(t, "GET", tc.label+"."+domain, "/", "")
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal([]byte(body), &e)
		if status != tc.status || e.Error.Code != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.label, status, body, tc.status, tc.code)
		}
	}
}

// TestEnvdPortNeedsToken: port 49983 needs the capsule's envd access token in X-Access-Token
// (docs/security.md); other ports do not.
func TestEnvdPortNeedsToken(t *testing.T) {
	f := newFixture(t)
	host := "49983-" + f.running + "." + domain
	for _, tc := range []struct {
		name   string
		hdr    []string
		status int
	}{
		{"no token", nil, 401},
		{"wrong token", []string{"X-Access-Token", "nope"}, 401},
		{"token prefix", []string{"X-Access-Token", envdToken[:10]}, 401},
		{"token", []string{"X-Access-Token", envdToken}, 200},
	} {
		status, body := f.do(t, "GET", host, "/health", "", tc.hdr...)
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.Unmarshal([]byte(body), &e)
		if status != tc.status || (status == 401 && e.Error.Code != apierr.CodeUnauthorized) {
			t.Errorf("%s: %d %s, want %d", tc.name, status, body, tc.status)
		}
	}
	// A capsule without a token (made before tokens existed) is not reachable on envd's port at all.
	if status, body := f.do(t, "GET", "49983-"+f.offline+"."+domain, "/health", "", "X-Access-Token", ""); status != 401 {
		t.Errorf("capsule without a token: %d %s", status, body)
	}
	if status, body := f.do(t, "GET", "8080-"+f.running+"."+domain, "/", ""); status != 200 {
		t.Errorf("other port without a token: %d %s", status, body)
	}
}

// TestSecureCapsuleNeedsTrafficToken: every port of a secure capsule but envd's needs its traffic access
// token, in Wrenn's header or the E2B SDK's (docs/security.md); other capsules' ports stay open.
func TestSecureCapsuleNeedsTrafficToken(t *testing.T) {
	f := newFixture(t)
	host := "8080-" + f.secure + "." + domain
	for _, tc := range []struct {
		name   string
		hdr    []string
		status int
	}{
		{"no token", nil, 401},
		{"wrong token", []string{"X-Wrenn-Traffic-Token", "nope"}, 401},
		{"token prefix", []string{"X-Wrenn-Traffic-Token", trafficToken[:10]}, 401},
		{"envd header", []string{"X-Access-Token", trafficToken}, 401},
		{"token", []string{"X-Wrenn-Traffic-Token", trafficToken}, 200},
		{"e2b header", []string{"e2b-traffic-access-token", trafficToken}, 200},
	} {
		status, body := f.do(t, "GET", host, "/", "", tc.hdr...)
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.Unmarshal([]byte(body), &e)
		if status != tc.status || (status == 401 && e.Error.Code != apierr.CodeUnauthorized) {
			t.Errorf("%s: %d %s, want %d", tc.name, status, body, tc.status)
		}
	}
	// The traffic token does not open envd: its port needs the envd token, secure or not.
	if status, body := f.do(t, "GET", "49983-"+f.secure+"."+domain, "/health", "", "X-Wrenn-Traffic-Token", trafficToken); status != 401 {
		t.Errorf("envd port with the traffic token: %d %s", status, body)
	}
	if status, body := f.do(t, "GET", "8080-"+f.running+"."+domain, "/", ""); status != 200 {
		t.Errorf("port of a capsule that is not secure: %d %s", status, body)
	}
}

func TestWebSocketThroughHTTP2Agent(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	host := "3000-" + f.running + "." + domain
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.front.URL, "http")+"/ws", &websocket.DialOptions{Host: host})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for i := range 3 {
		msg := fmt.Sprintf("ping %d", i)
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
	_ = c.Close(websocket.StatusNormalClosure, "")
}

func TestAgentDown(t *testing.T) {
	host := uuid.New()
	id := uuid.New()
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	p, err := portproxy.New(portproxy.Config{
		Store:      fakeStore{id: {ID: id, Status: "running", HostID: &host}},
		Transports: fakeTransports{goodHost: host, base: dead.URL, rt: http.DefaultTransport},
		Domain:     domain,
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "http://8080-"+ids.Capsule.Format(id)+"."+domain+"/", nil)
	p.Middleware(http.NotFoundHandler()).ServeHTTP(rec, req)
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), apierr.CodeHostUnavailable) {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

func TestEmptyDomainDisables(t *testing.T) {
	p, err := portproxy.New(portproxy.Config{Store: fakeStore{}, Transports: fakeTransports{}})
	if err != nil {
		t.Fatal(err)
	}
	next := http.NotFoundHandler()
	rec := httptest.NewRecorder()
	p.Middleware(next).ServeHTTP(rec, httptest.NewRequest("GET", "http://8080-cl-x.anything/", nil))
	if rec.Code != 404 {
		t.Fatalf("%d", rec.Code)
	}
}

// dashFree is the form of a capsule id without the dash (cl0k4x… for cl-0k4x…).
func dashFree(id string) string { return strings.Replace(id, "-", "", 1) }

// TestDashFreeIDInHost: {port}-{id}.{domain} takes the dash-free id too.
func TestDashFreeIDInHost(t *testing.T) {
	f := newFixture(t)
	status, body := f.do(t, "GET", "8080-"+dashFree(f.running)+"."+domain, "/p", "")
	var got seen
	_ = json.Unmarshal([]byte(body), &got)
	if status != 200 || got.Path != "/proxy/"+f.running+"/8080/p" {
		t.Fatalf("%d %s", status, body)
	}
}

// TestE2BHeaders: on any host, E2b-Sandbox-Id and E2b-Sandbox-Port choose the capsule port;
// the Host routing wins when both are present.
func TestE2BHeaders(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name, host string
		hdr        []string
		wantPath   string
	}{
		{"api host", "127.0.0.1:8080", []string{"E2b-Sandbox-Id", f.running, "E2b-Sandbox-Port", "3000"}, "/proxy/" + f.running + "/3000/x"},
		{"dash-free id", "localhost", []string{"E2b-Sandbox-Id", dashFree(f.running), "E2b-Sandbox-Port", "8080"}, "/proxy/" + f.running + "/8080/x"},
		{"other domain", "sandbox.example.org", []string{"e2b-sandbox-id", f.running, "e2b-sandbox-port", "80"}, "/proxy/" + f.running + "/80/x"},
		{"no port: envd", "localhost", []string{"E2b-Sandbox-Id", f.running, "X-Access-Token", envdToken}, "/proxy/" + f.running + "/49983/x"},
		{"host wins", "8081-" + f.running + "." + domain, []string{"E2b-Sandbox-Id", f.offline, "E2b-Sandbox-Port", "1"}, "/proxy/" + f.running + "/8081/x"},
	} {
		status, body := f.do(t, "GET", tc.host, "/x", "", tc.hdr...)
		var got seen
		_ = json.Unmarshal([]byte(body), &got)
		if status != 200 || got.Path != tc.wantPath || got.Host != tc.host {
			t.Errorf("%s: %d %s, want path %s", tc.name, status, body, tc.wantPath)
		}
	}
	// Without the id header the port header alone is the API's business.
	if status, body := f.do(t, "GET", "localhost", "/x", "", "E2b-Sandbox-Port", "8080"); status != 200 || body != "next" {
		t.Errorf("port header alone: %d %s", status, body)
	}
	// envd's port through the headers still needs the token.
	if status, body := f.do(t, "GET", "localhost", "/health", "", "E2b-Sandbox-Id", f.running, "E2b-Sandbox-Port", "49983"); status != 401 {
		t.Errorf("envd port without token: %d %s", status, body)
	}
	for _, tc := range []struct {
		name   string
		hdr    []string
		status int
		code   string
	}{
		{"bad id", []string{"E2b-Sandbox-Id", "debug_sandbox_id", "E2b-Sandbox-Port", "8080"}, 400, apierr.CodeInvalidRequest},
		{"upper-case id", []string{"E2b-Sandbox-Id", strings.ToUpper(f.running), "E2b-Sandbox-Port", "8080"}, 400, apierr.CodeInvalidRequest},
		{"bad port", []string{"E2b-Sandbox-Id", f.running, "E2b-Sandbox-Port", "0"}, 400, apierr.CodeInvalidRequest},
		{"port text", []string{"E2b-Sandbox-Id", f.running, "E2b-Sandbox-Port", "http"}, 400, apierr.CodeInvalidRequest},
		// E2B's convention: a sandbox that is gone or not running is a 502 with a plain-text body.
		{"unknown", []string{"E2b-Sandbox-Id", ids.Capsule.Format(uuid.New()), "E2b-Sandbox-Port", "8080"}, 502, ""},
		{"paused", []string{"E2b-Sandbox-Id", f.paused, "E2b-Sandbox-Port", "8080"}, 502, ""},
	} {
		status, body := f.do(t, "GET", "localhost:8080", "/", "", tc.hdr...)
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.Unmarshal([]byte(body), &e)
		if status != tc.status || e.Error.Code != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, status, body, tc.status, tc.code)
		}
	}
	// In host names the id's form tells the conventions apart: E2B's dash-free id gets E2B's 502, ours
	// docs/api.md's 404 and 503.
	unknown := ids.Capsule.Format(uuid.New())
	for _, tc := range []struct {
		host   string
		status int
	}{
		{"8080-" + dashFree(unknown) + "." + domain, 502},
		{"8080-" + dashFree(f.paused) + "." + domain, 502},
		{"8080-" + unknown + "." + domain, 404},
		{"8080-" + f.paused + "." + domain, 503},
	} {
		if status, body := f.do(t, "GET", tc.host, "/", ""); status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.host, status, body, tc.status)
		}
	}
	// Two port headers are ambiguous.
	req, _ := http.NewRequest("GET", f.front.URL+"/", nil)
	req.Header.Set("E2b-Sandbox-Id", f.running)
	req.Header.Add("E2b-Sandbox-Port", "8080")
	req.Header.Add("E2b-Sandbox-Port", "8081")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("two port headers: %d", resp.StatusCode)
	}
}

// TestWebSocketThroughE2BHeaders: an upgrade routed by the E2B headers.
func TestWebSocketThroughE2BHeaders(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hdr := http.Header{"E2b-Sandbox-Id": {dashFree(f.running)}, "E2b-Sandbox-Port": {"3000"}}
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.front.URL, "http")+"/ws", &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, b, err := c.Read(ctx); err != nil || string(b) != "echo:hi" {
		t.Fatalf("%q %v", b, err)
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
}
