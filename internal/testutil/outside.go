package testutil

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Outside is a stand-in for the internet and for private networks beside the host: a namespace the
// host routes to, serving HTTP with busybox httpd on 0.0.0.0:80 and 0.0.0.0:53 (TCP 53 stands for a DNS
// server), at addresses the host routes to it. N is the namespace's reserved octet (NewNetns).
type Outside struct {
	Netns    Netns
	Public   string // 198.51.100.N: the internet (a documentation range capsules may reach)
	Attached string // 10.241.N.2: a subnet attached to the host
	LAN      string // 192.168.N.2: a LAN service an operator may allow (wrenn-agent -egress-allow)
	LAN2     string // 192.168.N.3: a LAN service nobody allowed
	DNS      string // 192.168.N.53: a DNS server for capsules (wrenn-agent -dns)
	Body     string // what every address serves on / (index.html)
}

// NewOutside creates the namespace, its addresses, the host's routes to them and the servers; all go
// when the test ends.
func NewOutside(t testing.TB) Outside {
	t.Helper()
	n := NewNetns(t)
	octet := strings.Split(n.InsideIP, ".")[2]
	o := Outside{
		Netns:    n,
		Public:   "198.51.100." + octet,
		Attached: n.InsideIP,
		LAN:      "192.168." + octet + ".2",
		LAN2:     "192.168." + octet + ".3",
		DNS:      "192.168." + octet + ".53",
		Body:     "hello from outside",
	}
	// A capsule's traffic is masqueraded to a host address: the namespace needs a route back to the
	// host only. The host routes the /32s to the namespace; the routes go with its veth.
	ip(t, "-n", n.Name, "route", "add", "default", "via", n.HostIP)
	for _, a := range []string{o.Public, o.LAN, o.LAN2, o.DNS} {
		ip(t, "-n", n.Name, "addr", "add", a+"/32", "dev", "lo")
		ip(t, "route", "add", a+"/32", "via", n.InsideIP, "dev", n.HostVeth)
	}
	dir := servedDir(t, o.Body)
	for _, port := range []string{"80", "53"} {
		serveIn(t, n.Name, port, dir)
	}
	waitDial(t, o.Public+":80", o.DNS+":53")
	return o
}

// ServeMetadata serves HTTP on 169.254.169.254:80 in a namespace of its own and routes traffic from
// subnet (a host agent's capsule subnet, 10.N.0.0/16) only to it: a stand-in for a cloud metadata
// endpoint that leaves the host's own routes alone. It returns what the stand-in serves.
func ServeMetadata(t testing.TB, subnet string) string {
	t.Helper()
	n := NewNetns(t)
	ip(t, "-n", n.Name, "addr", "add", "169.254.169.254/32", "dev", n.InsideVeth)
	ip(t, "-n", n.Name, "route", "add", "default", "via", n.HostIP)
	const body = "metadata secrets"
	serveIn(t, n.Name, "80", servedDir(t, body))
	// A routing table of the subnet's own (10.N.0.0/16 is reserved by one test process).
	table := "42" + strings.Split(subnet, ".")[1]
	ip(t, "route", "add", "169.254.169.254/32", "via", n.InsideIP, "table", table)
	t.Cleanup(func() { _ = exec.Command("ip", "route", "del", "169.254.169.254/32", "table", table).Run() })
	ip(t, "rule", "add", "from", subnet, "to", "169.254.169.254", "lookup", table)
	t.Cleanup(func() {
		_ = exec.Command("ip", "rule", "del", "from", subnet, "to", "169.254.169.254", "lookup", table).Run()
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := exec.Command("ip", "netns", "exec", n.Name, "curl", "-sf", "-m", "2", "http://169.254.169.254/").CombinedOutput()
		if err == nil && strings.Contains(string(out), body) {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("metadata stand-in not serving: %v %s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// servedDir is a directory with an index.html holding body.
func servedDir(t testing.TB, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// serveIn runs busybox httpd serving dir on port in namespace ns until the test ends.
func serveIn(t testing.TB, ns, port, dir string) {
	t.Helper()
	srv := exec.Command("ip", "netns", "exec", ns, "busybox", "httpd", "-f", "-p", port, "-h", dir)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
}

// waitDial waits until every address accepts TCP connections.
func waitDial(t testing.TB, addrs ...string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, a := range addrs {
		for {
			c, err := net.DialTimeout("tcp", a, 2*time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not serving: %v", a, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
