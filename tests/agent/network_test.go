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

// world is a stand-in for the internet and for a private network beside
// the host: a namespace the host routes to, serving HTTP on 0.0.0.0:80 and
// 0.0.0.0:53 (TCP 53 stands for the capsules' DNS server), at addresses the
// host routes to it. N is the namespace's reserved octet (testutil.NewNetns).
type world struct {
	public   string // 198.51.100.N: the internet (documentation range)
	attached string // 10.241.N.2: a subnet attached to the host
	lan      string // 192.168.N.2: a LAN service the operator allows (-egress-allow)
	lan2     string // 192.168.N.3: a LAN service nobody allowed
	dns      string // 192.168.N.53: the capsules' DNS server (-dns)
}

func outside(t *testing.T) world {
	t.Helper()
	n := testutil.NewNetns(t)
	octet := strings.Split(n.InsideIP, ".")[2]
	w := world{
		public:   "198.51.100." + octet,
		attached: n.InsideIP,
		lan:      "192.168." + octet + ".2",
		lan2:     "192.168." + octet + ".3",
		dns:      "192.168." + octet + ".53",
	}
	// A capsule's traffic is masqueraded to a host address; the outside
	// needs a route back to the host only. The host routes the /32s to the
	// namespace; the routes go with its veth.
	ipOK(t, "-n", n.Name, "route", "add", "default", "via", n.HostIP)
	for _, a := range []string{w.public, w.lan, w.lan2, w.dns} {
		ipOK(t, "-n", n.Name, "addr", "add", a+"/32", "dev", "lo")
		ipOK(t, "route", "add", a+"/32", "via", n.InsideIP, "dev", n.HostVeth)
	}
	dir := servedDir(t)
	for _, port := range []string{"80", "53"} {
		srv := exec.Command("ip", "netns", "exec", n.Name, "busybox", "httpd", "-f", "-p", port, "-h", dir)
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	}
	eventually(t, 60*time.Second, "outside server", func() error {
		if err := tcpDial(w.public + ":80"); err != nil {
			return err
		}
		return tcpDial(w.dns + ":53")
	})
	return w
}

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

// metadataService serves HTTP on 169.254.169.254:80 in a namespace of its
// own, and routes traffic from the capsule subnet (only) to it: a stand-in
// for a cloud metadata endpoint that does not touch the host's own route.
func (h *host) metadataService(t *testing.T) {
	t.Helper()
	n := testutil.NewNetns(t)
	ipOK(t, "-n", n.Name, "addr", "add", "169.254.169.254/32", "dev", n.InsideVeth)
	ipOK(t, "-n", n.Name, "route", "add", "default", "via", n.HostIP)
	srv := exec.Command("ip", "netns", "exec", n.Name, "busybox", "httpd", "-f", "-p", "80", "-h", servedDir(t))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	// A routing table of this test's own: numbered after its reserved subnet (10.N.0.0/16).
	table := "42" + strings.Split(h.Subnet, ".")[1]
	ipOK(t, "route", "add", "169.254.169.254/32", "via", n.InsideIP, "table", table)
	t.Cleanup(func() { _ = exec.Command("ip", "route", "del", "169.254.169.254/32", "table", table).Run() })
	ipOK(t, "rule", "add", "from", h.Subnet, "to", "169.254.169.254", "lookup", table)
	t.Cleanup(func() {
		_ = exec.Command("ip", "rule", "del", "from", h.Subnet, "to", "169.254.169.254", "lookup", table).Run()
	})
	// The stand-in serves (so a capsule reaching it would be seen).
	if out, err := exec.Command("ip", "netns", "exec", n.Name, "curl", "-sf", "-m", "2", "http://169.254.169.254/").CombinedOutput(); err != nil {
		t.Fatalf("metadata stand-in not serving: %v %s", err, out)
	}
}

// servedDir is a directory with an index.html for busybox httpd.
func servedDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/index.html", []byte("hello from outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func ipOK(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v\n%s", args, err, out)
	}
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
	world := outside(t)
	h := &host{Host: agenthost.Start(t, agenthost.Options{Args: []string{"-dns", world.dns, "-egress-allow", world.lan + "/32"}}), t: t}
	port := hostService(t)
	h.metadataService(t)

	online := h.create(t, func(r *hav1.CreateSandboxRequest) { r.AllowInternet = true })
	offline := h.create(t, nil)
	h.installProbe(t, online.SandboxId)
	h.installProbe(t, offline.SandboxId)

	// Positive control first: the outside is reachable at all.
	if out, ok := h.fetchWithin(t, online.SandboxId, "http://"+world.public+"/", "20s"); !ok {
		diag, _, _ := h.tryExec(t, online.SandboxId, "ip addr; ip route")
		nft, _ := exec.Command("nft", "list", "table", "inet", h.Prefix).CombinedOutput()
		routes, _ := exec.Command("ip", "route").CombinedOutput()
		t.Fatalf("capsule with internet cannot reach the outside: %s\ncapsule:\n%s\nnft:\n%s\nhost routes:\n%s", out, diag, nft, routes)
	}
	// What the operator opened: the DNS server's port 53 and the allowed LAN service.
	for _, u := range []string{"http://" + world.dns + ":53/", "http://" + world.lan + "/"} {
		if out, ok := h.fetchWithin(t, online.SandboxId, u, "20s"); !ok {
			t.Errorf("capsule with internet cannot reach %s: %s", u, out)
		}
	}
	// Nothing else private: another LAN service, a subnet attached to the
	// host, the DNS server's other ports.
	for _, u := range []string{"http://" + world.lan2 + "/", "http://" + world.attached + "/", "http://" + world.dns + "/"} {
		if out, ok := h.fetch(t, online.SandboxId, u); ok {
			t.Errorf("capsule reached %s: %s", u, out)
		}
	}
	for _, u := range []string{"http://" + world.public + "/", "http://" + world.dns + ":53/", "http://" + world.lan + "/"} {
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
