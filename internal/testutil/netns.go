package testutil

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// Netns is a network namespace joined to the host by a veth pair with a /30
// between them.
type Netns struct {
	Name       string // namespace, for ip netns exec
	HostVeth   string // veth end in the host namespace
	InsideVeth string // veth end inside the namespace
	HostIP     string // 10.241.N.1
	InsideIP   string // 10.241.N.2
}

// NewNetns creates a namespace wtn-<rand> (not wrn-: the agent's default
// prefix, whose leftovers an agent removes) and a veth pair wtn-<rand>-h
// (host, 10.241.N.1/30) / wtn-<rand> (inside, 10.241.N.2/30, with lo up).
// Both are deleted when the test ends.
func NewNetns(t testing.TB) Netns {
	t.Helper()
	RequireRoot(t)
	name := RandomName("wtn-", 6)
	octet := freeOctet(t)
	n := Netns{
		Name:       name,
		HostVeth:   name + "-h",
		InsideVeth: name,
		HostIP:     fmt.Sprintf("10.241.%d.1", octet),
		InsideIP:   fmt.Sprintf("10.241.%d.2", octet),
	}
	ip(t, "netns", "add", n.Name)
	t.Cleanup(func() {
		// Deleting the namespace destroys the inside end and with it the
		// pair; the explicit delete covers a failure before the move.
		_ = exec.Command("ip", "link", "del", n.HostVeth).Run()
		if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", n.Name, err, out)
		}
	})
	ip(t, "link", "add", n.HostVeth, "type", "veth", "peer", "name", n.InsideVeth)
	ip(t, "link", "set", n.InsideVeth, "netns", n.Name)
	ip(t, "addr", "add", n.HostIP+"/30", "dev", n.HostVeth)
	ip(t, "link", "set", n.HostVeth, "up")
	ip(t, "-n", n.Name, "addr", "add", n.InsideIP+"/30", "dev", n.InsideVeth)
	ip(t, "-n", n.Name, "link", "set", n.InsideVeth, "up")
	ip(t, "-n", n.Name, "link", "set", "lo", "up")
	return n
}

// freeOctet reserves N so that 10.241.N.0/30 is used by no interface of the host and no other test
// process holds it: test packages run in parallel, and two namespaces with one subnet would make the
// host route one's traffic into the other.
func freeOctet(t testing.TB) int {
	t.Helper()
	return reserve(t, "wrenn-test-netns", 0, 256, func(n int) string { return fmt.Sprintf(" 10.241.%d.", n) })
}

func ip(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
