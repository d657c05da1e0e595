package agent_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/agenthost"
)

// hostService listens on every host address, like the agent, the control
// plane or PostgreSQL might.
func hostService(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "host secret") })}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// fetch runs the probe in a capsule with its short default timeout, for
// what must not be reachable (a slow machine can only make that pass); ok
// reports whether it got a 200.
func (h *host) fetch(t *testing.T, id, url string) (string, bool) {
	t.Helper()
	return h.fetchWithin(t, id, url, "2s")
}

// fetchWithin is fetch with a timeout (a Go duration).
func (h *host) fetchWithin(t *testing.T, id, url, timeout string) (string, bool) {
	t.Helper()
	out, code, err := h.tryExec(t, id, "/tmp/probe "+url+" "+timeout)
	if err != nil {
		t.Fatalf("exec probe: %v", err)
	}
	return out, code == 0
}

// installProbe copies the probe binary into a capsule.
func (h *host) installProbe(t *testing.T, id string) {
	t.Helper()
	b, err := os.ReadFile(testutil.BuildBinary(t, "./tests/agent/probe"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.API.WriteFile(ctxT(t, time.Minute), connect.NewRequest(&hav1.WriteFileRequest{SandboxId: id, Path: "/tmp/probe", Content: b})); err != nil {
		t.Fatal(err)
	}
	h.exec(t, id, "chmod +x /tmp/probe")
}

func TestNetworkIsolation(t *testing.T) {
	world := testutil.NewOutside(t)
	h := &host{Host: agenthost.Start(t, agenthost.Options{Args: []string{"-dns", world.DNS, "-egress-allow", world.LAN + "/32"}}), t: t}
	port := hostService(t)
	testutil.ServeMetadata(t, h.Subnet)

	online := h.create(t, func(r *hav1.CreateSandboxRequest) { r.AllowInternet = true })
	offline := h.create(t, nil)
	h.installProbe(t, online.SandboxId)
	h.installProbe(t, offline.SandboxId)

	// Positive control first: the outside is reachable at all.
	if out, ok := h.fetchWithin(t, online.SandboxId, "http://"+world.Public+"/", "20s"); !ok {
		diag, _, _ := h.tryExec(t, online.SandboxId, "ip addr; ip route")
		nft, _ := exec.Command("nft", "list", "table", "inet", h.Prefix).CombinedOutput()
		routes, _ := exec.Command("ip", "route").CombinedOutput()
		t.Fatalf("capsule with internet cannot reach the outside: %s\ncapsule:\n%s\nnft:\n%s\nhost routes:\n%s", out, diag, nft, routes)
	}
	// What the operator opened: the DNS server's port 53 and the allowed LAN service.
	for _, u := range []string{"http://" + world.DNS + ":53/", "http://" + world.LAN + "/"} {
		if out, ok := h.fetchWithin(t, online.SandboxId, u, "20s"); !ok {
			t.Errorf("capsule with internet cannot reach %s: %s", u, out)
		}
	}
	// Nothing else private: another LAN service, a subnet attached to the
	// host, the DNS server's other ports.
	for _, u := range []string{"http://" + world.LAN2 + "/", "http://" + world.Attached + "/", "http://" + world.DNS + "/"} {
		if out, ok := h.fetch(t, online.SandboxId, u); ok {
			t.Errorf("capsule reached %s: %s", u, out)
		}
	}
	for _, u := range []string{"http://" + world.Public + "/", "http://" + world.DNS + ":53/", "http://" + world.LAN + "/"} {
		if out, ok := h.fetch(t, offline.SandboxId, u); ok {
			t.Errorf("capsule without internet reached %s: %s", u, out)
		}
	}
	// The host reaches both capsules' envd.
	for _, c := range []string{online.HostIp, offline.HostIp} {
		if err := tcpDial(c + ":49983"); err != nil {
			t.Errorf("host cannot reach envd at %s: %v", c, err)
		}
	}
	// No capsule reaches another capsule.
	if out, ok := h.fetch(t, online.SandboxId, "http://"+offline.HostIp+":49983/health"); ok {
		t.Errorf("capsule reached another capsule: %s", out)
	}
	// No capsule reaches services on the host, on any host address.
	gw := strings.TrimSpace(h.exec(t, online.SandboxId, "ip route | awk '/default/ {print $3}'"))
	addrs := []string{gw}
	if out, err := exec.Command("hostname", "-I").Output(); err == nil {
		addrs = append(addrs, strings.Fields(string(out))...)
	}
	for _, a := range addrs {
		if a == "" || strings.Contains(a, ":") {
			continue
		}
		if out, ok := h.fetch(t, online.SandboxId, fmt.Sprintf("http://%s:%d/", a, port)); ok {
			t.Errorf("capsule reached a host service at %s: %s", a, out)
		}
	}
	// Nor link-local metadata addresses.
	if out, ok := h.fetch(t, online.SandboxId, "http://169.254.169.254/"); ok {
		t.Errorf("capsule reached the metadata address: %s", out)
	}
}
