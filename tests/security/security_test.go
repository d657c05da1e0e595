package security_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
	"github.com/wrenn/wrenn/internal/testutil/platform"
)

const envdPort = 49983

// TestAttacker runs every attack of docs/security.md's threat model against one platform: a control
// plane serving the port proxy on "localhost" with short connection timeouts and WebSocket re-checks,
// and a host agent whose capsules get the outside's DNS server and may reach one allowed LAN service.
func TestAttacker(t *testing.T) {
	testutil.Integration(t)
	out := testutil.NewOutside(t)
	p := platform.New(t, 1, "--proxy-domain", "localhost",
		"--read-header-timeout", "2s", "--idle-timeout", "3s", "--ws-recheck-interval", "2s")
	p.AgentArgs = []string{"-dns", out.DNS, "-egress-allow", out.LAN + "/32"}
	node := p.AddHost(t, false)
	metadata := testutil.ServeMetadata(t, node.Agent.Subnet)
	s := &suite{p: p, owner: cptest.Key(p.Key)}

	c := s.create(t, s.owner, map[string]any{"template": "minimal", "memory_mb": 256})
	s.installProbe(t, c.ID)

	t.Run("EnvdThroughProxy", func(t *testing.T) { s.envdThroughProxy(t, c) })
	t.Run("EnvdHostOnlyPaths", func(t *testing.T) { s.envdHostOnlyPaths(t, c) })
	t.Run("InitFromInsideCapsule", func(t *testing.T) { s.initFromInside(t, c) })
	t.Run("SecureCapsule", func(t *testing.T) { s.secureCapsule(t, c) })
	t.Run("Egress", func(t *testing.T) { s.egress(t, c, out, metadata) })
	t.Run("WebhookToLoopback", s.webhookToLoopback)
	t.Run("MemberCreatesKey", s.memberCreatesKey)
	t.Run("RevokedKeyClosesPTY", func(t *testing.T) { s.revokedKeyClosesPTY(t, c) })
	t.Run("Quota", s.quota)
	t.Run("SlowAndIdleConnections", s.slowAndIdleConnections)
}

// envd (port 49983) through the port proxy needs the capsule's envd access token.
func (s *suite) envdThroughProxy(t *testing.T, c capsule) {
	other := s.create(t, s.owner, map[string]any{"template": "minimal", "memory_mb": 128})
	connect := []string{"Content-Type", "application/json", "Connect-Protocol-Version", "1"}
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      []string
		want                     int
	}{
		{"no token", "GET", "/envs", "", nil, 401},
		{"wrong token", "GET", "/envs", "", []string{"X-Access-Token", "not-the-token"}, 401},
		{"another capsule's token", "GET", "/envs", "", []string{"X-Access-Token", other.EnvdAccessToken}, 401},
		{"token in another header", "GET", "/envs", "", []string{"X-Wrenn-Traffic-Token", c.EnvdAccessToken}, 401},
		{"health without token", "GET", "/health", "", nil, 401},
		{"process list without token", "POST", "/process.Process/List", "{}", connect, 401},
		{"token", "GET", "/envs", "", []string{"X-Access-Token", c.EnvdAccessToken}, 200},
		{"process list with token", "POST", "/process.Process/List", "{}", append([]string{"X-Access-Token", c.EnvdAccessToken}, connect...), 200},
	} {
		status, body := s.proxied(t, tc.method, envdPort, c.ID, tc.path, tc.body, tc.hdr...)
		if status != tc.want || (status == 401 && errorCode(body) != "unauthorized") {
			t.Errorf("%s: %d %s, want %d", tc.name, status, body, tc.want)
		}
	}
}

// envd's host-only endpoints are never proxied, not even with the token and however the path is spelt.
func (s *suite) envdHostOnlyPaths(t *testing.T, c capsule) {
	for _, path := range []string{"/init", "/snapshot/prepare", "/x/../init", "/%69nit", "//init"} {
		status, body := s.proxied(t, "POST", envdPort, c.ID, path, `{"defaultUser":"nobody"}`,
			"X-Access-Token", c.EnvdAccessToken, "Content-Type", "application/json")
		if status != 403 || errorCode(body) != "forbidden" {
			t.Errorf("POST %s through the proxy with the token: %d %s, want 403", path, status, body)
		}
	}
	// The same token opens what envd may serve.
	if status, body := s.proxied(t, "GET", envdPort, c.ID, "/envs", "", "X-Access-Token", c.EnvdAccessToken); status != 200 {
		t.Errorf("GET /envs with the token: %d %s", status, body)
	}
	if got := strings.TrimSpace(s.mustExec(t, c.ID, "echo still-serving")); got != "still-serving" {
		t.Errorf("capsule after the attempts: %q", got)
	}
}

// A process inside the capsule, root or not, cannot re-initialise envd (change its default user); the
// agent's own /init (on resume) still works, and the token works from inside too.
func (s *suite) initFromInside(t *testing.T, c capsule) {
	before := strings.TrimSpace(s.mustExec(t, c.ID, "id -u"))
	initBody := `{"defaultUser":"nobody","envVars":{"PWNED":"1"}}`
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"non-root user", []string{"-uid", "65534"}},
		{"root without the token", nil},
		{"non-root user with a wrong token", []string{"-uid", "65534", "-H", "X-Access-Token: guess"}},
	} {
		args := append(append([]string{}, tc.args...), "-X", "POST", "-H", "Content-Type: application/json", "-d", initBody, "-t", "20s",
			fmt.Sprintf("http://127.0.0.1:%d/init", envdPort))
		out, ok := s.probe(t, c.ID, args...)
		if ok || !strings.HasPrefix(out, "status 401") {
			t.Errorf("%s: POST /init from inside the capsule: %s", tc.name, out)
		}
	}
	// The allowed direction from inside: the token opens envd.
	if out, ok := s.probe(t, c.ID, "-uid", "65534", "-H", "X-Access-Token: "+c.EnvdAccessToken, "-t", "20s",
		fmt.Sprintf("http://127.0.0.1:%d/envs", envdPort)); !ok {
		t.Errorf("GET /envs from inside with the token: %s", out)
	}
	// Nothing changed, and the agent's /init (resume) still works.
	for _, path := range []string{"/pause", "/resume"} {
		if res := cptest.Call(t, s.p.URL(), "POST", "/v1/capsules/"+c.ID+path, s.owner, nil); res.Status != 200 {
			t.Fatalf("%s: %d %s", path, res.Status, res.Body)
		}
	}
	if got := strings.TrimSpace(s.mustExec(t, c.ID, "id -u; echo \"pwned=$PWNED\"")); got != before+"\npwned=" {
		t.Errorf("after the attempts and a resume: %q, want user %s and no PWNED", got, before)
	}
	if status, body := s.proxied(t, "GET", envdPort, c.ID, "/envs", "", "X-Access-Token", c.EnvdAccessToken); status != 200 {
		t.Errorf("envd after resume with the token: %d %s", status, body)
	}
}

// A secure capsule's ports need its traffic token; other capsules' ports are open.
func (s *suite) secureCapsule(t *testing.T, open capsule) {
	sc := s.create(t, s.owner, map[string]any{"template": "minimal", "memory_mb": 256, "secure": true})
	raw, err := base64.RawURLEncoding.DecodeString(sc.TrafficAccessToken)
	if !sc.Secure || err != nil || len(raw) < 32 || sc.TrafficAccessToken == sc.EnvdAccessToken {
		t.Fatalf("secure capsule: secure=%v traffic_access_token %q (%d bytes, %v)", sc.Secure, sc.TrafficAccessToken, len(raw), err)
	}
	if got := s.get(t, sc.ID); !got.Secure || got.TrafficAccessToken != sc.TrafficAccessToken {
		t.Fatalf("get secure capsule: %+v", got)
	}
	if got := s.get(t, open.ID); got.Secure || got.TrafficAccessToken != "" {
		t.Fatalf("capsule created without secure: %+v", got)
	}
	// Sealed at rest: a database dump does not show the token.
	rowID, err := ids.Capsule.Parse(sc.ID)
	if err != nil {
		t.Fatal(err)
	}
	var sealed []byte
	if err := s.db(t).QueryRow(t.Context(), `SELECT traffic_token FROM capsules WHERE id = $1`, rowID).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if len(sealed) == 0 || strings.Contains(string(sealed), sc.TrafficAccessToken) || strings.Contains(string(sealed), string(raw)) {
		t.Fatalf("traffic_token column is not sealed: %x", sealed)
	}
	const port = 8000
	for _, id := range []string{sc.ID, open.ID} {
		if id == sc.ID {
			s.installProbe(t, id)
		}
		res := cptest.Call(t, s.p.URL(), "POST", "/v1/capsules/"+id+"/exec", s.owner,
			map[string]any{"cmd": "/tmp/probe", "args": []string{"-serve", ":" + strconv.Itoa(port)}, "background": true})
		if res.Status != 202 {
			t.Fatalf("start server in %s: %d %s", id, res.Status, res.Body)
		}
	}
	check := func(when string) {
		t.Helper()
		platform.Eventually(t, 60*time.Second, when+": server of the secure capsule with its token", func() error {
			if status, body := s.proxied(t, "GET", port, sc.ID, "/", "", "X-Wrenn-Traffic-Token", sc.TrafficAccessToken); status != 200 || body != "hello from the capsule" {
				return fmt.Errorf("%d %s", status, body)
			}
			return nil
		})
		for _, tc := range []struct {
			name string
			hdr  []string
			want int
		}{
			{"no token", nil, 401},
			{"wrong token", []string{"X-Wrenn-Traffic-Token", "guess"}, 401},
			{"envd token", []string{"X-Wrenn-Traffic-Token", sc.EnvdAccessToken}, 401},
			{"token in X-Access-Token", []string{"X-Access-Token", sc.TrafficAccessToken}, 401},
			{"token", []string{"X-Wrenn-Traffic-Token", sc.TrafficAccessToken}, 200},
			{"E2B header", []string{"e2b-traffic-access-token", sc.TrafficAccessToken}, 200},
		} {
			status, body := s.proxied(t, "GET", port, sc.ID, "/", "", tc.hdr...)
			if status != tc.want || (status == 401 && errorCode(body) != "unauthorized") {
				t.Errorf("%s: %s: %d %s, want %d", when, tc.name, status, body, tc.want)
			}
		}
		// envd's port takes the envd token, not the traffic token.
		if status, body := s.proxied(t, "GET", envdPort, sc.ID, "/envs", "", "X-Wrenn-Traffic-Token", sc.TrafficAccessToken); status != 401 {
			t.Errorf("%s: envd with the traffic token: %d %s", when, status, body)
		}
		if status, body := s.proxied(t, "GET", envdPort, sc.ID, "/envs", "", "X-Access-Token", sc.EnvdAccessToken); status != 200 {
			t.Errorf("%s: envd with its token: %d %s", when, status, body)
		}
	}
	check("created")
	platform.Eventually(t, 60*time.Second, "server of the open capsule without a token", func() error {
		if status, body := s.proxied(t, "GET", port, open.ID, "/", ""); status != 200 || body != "hello from the capsule" {
			return fmt.Errorf("%d %s", status, body)
		}
		return nil
	})
	// Pause and resume keep the flag and the token.
	for _, path := range []string{"/pause", "/resume"} {
		if res := cptest.Call(t, s.p.URL(), "POST", "/v1/capsules/"+sc.ID+path, s.owner, nil); res.Status != 200 {
			t.Fatalf("%s: %d %s", path, res.Status, res.Body)
		}
	}
	if got := s.get(t, sc.ID); !got.Secure || got.TrafficAccessToken != sc.TrafficAccessToken {
		t.Fatalf("secure capsule after resume: %+v", got)
	}
	check("resumed")
}

// A capsule reaches the internet stand-in, the allowed LAN service and its DNS server's port 53, and
// nothing else private: another LAN service, a subnet attached to the host, the host's own addresses,
// link-local metadata.
func (s *suite) egress(t *testing.T, c capsule, out testutil.Outside, metadata string) {
	// Allowed first: it proves the network works at all.
	for _, u := range []string{"http://" + out.Public + "/", "http://" + out.LAN + "/", "http://" + out.DNS + ":53/"} {
		if got, ok := s.probe(t, c.ID, "-t", "20s", u); !ok || !strings.Contains(got, out.Body) {
			t.Errorf("capsule cannot reach %s: %s", u, got)
		}
	}
	refused := []string{"http://" + out.LAN2 + "/", "http://" + out.Attached + "/", "http://" + out.DNS + "/", "http://169.254.169.254/"}
	// The host's own addresses, where the control plane listens (0.0.0.0).
	cpPort := strconv.Itoa(s.p.CPs[0].Port)
	gw := gateway(t, s.mustExec(t, c.ID, "cat /proc/net/route"))
	if body, err := platform.HTTPGet("http://" + net.JoinHostPort(gw, cpPort) + "/health"); err != nil {
		t.Fatalf("the control plane does not serve on the capsule's gateway %s: %v %s", gw, err, body)
	}
	addrs := []string{gw}
	if b, err := exec.Command("hostname", "-I").Output(); err == nil {
		addrs = append(addrs, strings.Fields(string(b))...)
	}
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip != nil && ip.To4() != nil {
			refused = append(refused, "http://"+net.JoinHostPort(a, cpPort)+"/health")
		}
	}
	for _, u := range refused {
		if got, ok := s.probe(t, c.ID, u); ok || strings.Contains(got, out.Body) || strings.Contains(got, metadata) {
			t.Errorf("capsule reached %s: %s", u, got)
		}
	}
}

// gateway returns the default gateway in a /proc/net/route listing.
func gateway(t *testing.T, routes string) string {
	t.Helper()
	for _, line := range strings.Split(routes, "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[1] == "00000000" {
			v, err := strconv.ParseUint(f[2], 16, 32)
			if err != nil {
				break
			}
			return net.IPv4(byte(v), byte(v>>8), byte(v>>16), byte(v>>24)).String()
		}
	}
	t.Fatalf("no default route in\n%s", routes)
	return ""
}

// A webhook to a loopback server is refused unless the operator allows private destinations.
func (s *suite) webhookToLoopback(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "internal secret")
	}))
	t.Cleanup(srv.Close)
	body := map[string]any{"provider": "webhook", "config": map[string]any{"url": srv.URL + "/hook"}}
	res := cptest.Call(t, s.p.URL(), "POST", "/v1/channels/test", cptest.Bearer(s.p.Admin), body)
	if res.Status != 400 || strings.Contains(string(res.Body), "internal secret") || hits.Load() != 0 {
		t.Errorf("webhook to loopback: %d %s, %d requests reached it", res.Status, res.Body, hits.Load())
	}
	// A control plane whose operator allows private destinations delivers it.
	args := s.p.CPArgs
	s.p.CPArgs = append(slices.Clone(args), "--channels-allow-private")
	allowing := s.p.StartCP(0)
	s.p.CPArgs = args
	defer allowing.Stop()
	res = cptest.Call(t, allowing.URL, "POST", "/v1/channels/test", cptest.Bearer(s.p.Admin), body)
	if res.Status != 200 || hits.Load() != 1 {
		t.Errorf("webhook to loopback with --channels-allow-private: %d %s, %d requests reached it", res.Status, res.Body, hits.Load())
	}
}

// A team member cannot create or revoke the team's API keys; the owner can.
func (s *suite) memberCreatesKey(t *testing.T) {
	bobJWT, _ := s.p.Signup(t, "bob@example.test", "Bob")
	owner := cptest.Bearer(s.p.Admin)
	if res := cptest.Call(t, s.p.URL(), "POST", "/v1/teams/"+s.p.TeamID+"/members", owner, map[string]string{"email": "bob@example.test"}); res.Status != 201 {
		t.Fatalf("add member: %d %s", res.Status, res.Body)
	}
	res := cptest.Call(t, s.p.URL(), "POST", "/v1/auth/switch-team", cptest.Bearer(bobJWT), map[string]string{"team_id": s.p.TeamID})
	if res.Status != 200 {
		t.Fatalf("switch-team: %d %s", res.Status, res.Body)
	}
	var sw struct{ Token string }
	res.JSON(t, &sw)
	member := cptest.Bearer(sw.Token)

	if res := cptest.Call(t, s.p.URL(), "POST", "/v1/api-keys", member, map[string]string{"name": "member's"}); res.Status != 403 || res.ErrorCode() != "forbidden" {
		t.Errorf("member creates a key: %d %s", res.Status, res.Body)
	}
	res = cptest.Call(t, s.p.URL(), "POST", "/v1/api-keys", owner, map[string]string{"name": "owner's"})
	if res.Status != 201 {
		t.Fatalf("owner creates a key: %d %s", res.Status, res.Body)
	}
	var k struct{ ID, Key string }
	res.JSON(t, &k)
	if res := cptest.Call(t, s.p.URL(), "DELETE", "/v1/api-keys/"+k.ID, member, nil); res.Status != 403 {
		t.Errorf("member revokes a key: %d %s", res.Status, res.Body)
	}
	if res := cptest.Call(t, s.p.URL(), "GET", "/v1/capsules", cptest.Key(k.Key), nil); res.Status != 200 {
		t.Errorf("key after the member's revoke: %d %s", res.Status, res.Body)
	}
	if res := cptest.Call(t, s.p.URL(), "DELETE", "/v1/api-keys/"+k.ID, owner, nil); res.Status != 204 {
		t.Errorf("owner revokes the key: %d %s", res.Status, res.Body)
	}
}

// A PTY WebSocket opened with an API key is closed with 4001 once the key is revoked.
func (s *suite) revokedKeyClosesPTY(t *testing.T, c capsule) {
	owner := cptest.Bearer(s.p.Admin)
	res := cptest.Call(t, s.p.URL(), "POST", "/v1/api-keys", owner, map[string]string{"name": "pty"})
	if res.Status != 201 {
		t.Fatalf("create key: %d %s", res.Status, res.Body)
	}
	var k struct{ ID, Key string }
	res.JSON(t, &k)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h := http.Header{}
	h.Set("X-API-Key", k.Key)
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.p.URL(), "http")+"/v1/capsules/"+c.ID+"/pty", &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("dial PTY: %v", err)
	}
	defer conn.CloseNow()
	send := func(v any) {
		b, _ := json.Marshal(v)
		if err := conn.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	type frame struct{ Type, Data, Code string }
	read := func() (frame, error) {
		_, b, err := conn.Read(ctx)
		if err != nil {
			return frame{}, err
		}
		var f frame
		_ = json.Unmarshal(b, &f)
		return f, nil
	}
	// The key works: a shell answers.
	send(map[string]any{"type": "start", "cmd": "/bin/sh"})
	send(map[string]any{"type": "input", "data": base64.StdEncoding.EncodeToString([]byte("echo pty-$((6*7))\n"))})
	var seen strings.Builder
	for !strings.Contains(seen.String(), "pty-42") {
		f, err := read()
		if err != nil {
			t.Fatalf("PTY before the revoke: %v (output %q)", err, seen.String())
		}
		if f.Type == "error" {
			t.Fatalf("PTY error frame: %+v", f)
		}
		if f.Type == "output" {
			b, _ := base64.StdEncoding.DecodeString(f.Data)
			seen.Write(b)
		}
	}
	if res := cptest.Call(t, s.p.URL(), "DELETE", "/v1/api-keys/"+k.ID, owner, nil); res.Status != 204 {
		t.Fatalf("revoke: %d %s", res.Status, res.Body)
	}
	for {
		f, err := read()
		if err != nil {
			if st := websocket.CloseStatus(err); st != 4001 {
				t.Fatalf("PTY after the revoke ended with %v (close status %d), want close 4001", err, st)
			}
			return
		}
		if f.Type == "error" && f.Code != "unauthorized" {
			t.Errorf("error frame after the revoke: %+v", f)
		}
	}
}

// Over its quota a team gets 429 quota_exceeded and nothing is created; within it creates work.
func (s *suite) quota(t *testing.T) {
	carolJWT, carolTeam := s.p.Signup(t, "carol@example.test", "Carol")
	carol := cptest.Bearer(carolJWT)
	res := cptest.Call(t, s.p.URL(), "PUT", "/v1/admin/teams/"+carolTeam+"/quotas", cptest.Bearer(s.p.Admin), map[string]any{"capsules": 1})
	if res.Status != 200 {
		t.Fatalf("set quota: %d %s", res.Status, res.Body)
	}
	body := map[string]any{"template": "minimal", "memory_mb": 128}
	first := s.create(t, carol, body)
	res = cptest.Call(t, s.p.URL(), "POST", "/v1/capsules", carol, body)
	if res.Status != 429 || res.ErrorCode() != "quota_exceeded" || !strings.Contains(string(res.Body), "running capsules 1/1") {
		t.Fatalf("create over the quota: %d %s", res.Status, res.Body)
	}
	var list []capsule
	cptest.Call(t, s.p.URL(), "GET", "/v1/capsules", carol, nil).JSON(t, &list)
	if len(list) != 1 {
		t.Fatalf("carol has %d capsules after a refused create, want 1", len(list))
	}
	s.destroy(t, carol, first.ID)
	second := s.create(t, carol, body)

	// A pause needs room for the paused disk; the capsule keeps running when it has none.
	res = cptest.Call(t, s.p.URL(), "PUT", "/v1/admin/teams/"+carolTeam+"/quotas", cptest.Bearer(s.p.Admin), map[string]any{"capsules": 1, "paused_disk_mb": 1})
	if res.Status != 200 {
		t.Fatalf("set quota: %d %s", res.Status, res.Body)
	}
	res = cptest.Call(t, s.p.URL(), "POST", "/v1/capsules/"+second.ID+"/pause", carol, nil)
	if res.Status != 429 || res.ErrorCode() != "quota_exceeded" {
		t.Fatalf("pause over the paused-disk quota: %d %s", res.Status, res.Body)
	}
	if res := cptest.Call(t, s.p.URL(), "POST", "/v1/capsules/"+second.ID+"/exec", carol, map[string]any{"cmd": "true"}); res.Status != 200 {
		t.Fatalf("capsule after a refused pause: %d %s", res.Status, res.Body)
	}
	res = cptest.Call(t, s.p.URL(), "PUT", "/v1/admin/teams/"+carolTeam+"/quotas", cptest.Bearer(s.p.Admin), map[string]any{"capsules": 1, "paused_disk_mb": 0})
	if res.Status != 200 {
		t.Fatalf("set quota: %d %s", res.Status, res.Body)
	}
	if res := cptest.Call(t, s.p.URL(), "POST", "/v1/capsules/"+second.ID+"/pause", carol, nil); res.Status != 200 {
		t.Fatalf("pause within the quota: %d %s", res.Status, res.Body)
	}
}

// A client that never finishes its headers, and a keep-alive connection left idle, are closed by the
// server; complete requests and prompt keep-alive requests are served.
func (s *suite) slowAndIdleConnections(t *testing.T) {
	addr := strings.TrimPrefix(s.p.URL(), "http://")
	request := "GET /health HTTP/1.1\r\nHost: " + addr + "\r\n\r\n"
	dial := func() net.Conn {
		conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	get := func(conn net.Conn, br *bufio.Reader) {
		t.Helper()
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(conn, request); err != nil {
			t.Fatalf("write request: %v", err)
		}
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("read response: %v", err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || res.Close {
			t.Fatalf("GET /health: %d (close %v)", res.StatusCode, res.Close)
		}
	}
	// closedByServer waits (60 s at most) for the server to close conn.
	closedByServer := func(what string, conn net.Conn, br *bufio.Reader) {
		t.Helper()
		_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
		_, err := io.Copy(io.Discard, br)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: still open after 60 s", what)
		}
	}

	slow := dial()
	if _, err := io.WriteString(slow, "GET /health HTTP/1.1\r\nHost: "+addr+"\r\n"); err != nil {
		t.Fatal(err)
	}
	complete := dial()
	get(complete, bufio.NewReader(complete)) // served meanwhile
	closedByServer("connection that never finished its headers", slow, bufio.NewReader(slow))

	idle := dial()
	br := bufio.NewReader(idle)
	get(idle, br)
	get(idle, br) // keep-alive: a prompt second request is served on the same connection
	closedByServer("idle keep-alive connection", idle, br)
}
