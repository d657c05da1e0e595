package network

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"strings"
)

// resolvConfs are read in order; systemd-resolved's stub (127.0.0.53) in the first one is useless to a
// capsule, whose own network cannot reach the host's loopback, so the upstream list is tried next.
var resolvConfs = []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"}

// HostNameservers returns the host's DNS servers that a capsule can use: the nameserver entries of the
// host's resolv.conf that are not loopback or link-local addresses (capsules reach neither).
func HostNameservers() []string {
	for _, p := range resolvConfs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if ns := ParseNameservers(b); len(ns) > 0 {
			return ns
		}
	}
	return nil
}

// ParseNameservers returns the usable nameserver addresses of a resolv.conf.
func ParseNameservers(resolvConf []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(resolvConf))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() || a.Zone() != "" {
			continue
		}
		out = append(out, a.String())
	}
	return out
}
