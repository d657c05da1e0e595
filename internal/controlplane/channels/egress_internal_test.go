package channels

import (
	"net/netip"
	"testing"
)

func TestEgressPermitted(t *testing.T) {
	refused := []string{
		"127.0.0.1", "127.8.9.10", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "100.127.255.254",
		"169.254.169.254", "169.254.1.1", "fe80::1", "fc00::1", "fd00:ec2::254", "0.0.0.0", "::", "0.1.2.3",
		"224.0.0.1", "239.255.255.250", "ff02::1", "255.255.255.255", "240.0.0.1", "198.18.0.1", "192.0.0.8",
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a00:1", "64:ff9b::7f00:1",
	}
	allowed := []string{"1.1.1.1", "93.184.216.34", "2606:4700::1111", "64:ff9b::101:101", "100.128.0.1", "172.32.0.1"}
	e := egress{}
	for _, a := range refused {
		if e.permitted(netip.MustParseAddr(a)) {
			t.Errorf("%s permitted by default", a)
		}
	}
	for _, a := range allowed {
		if !e.permitted(netip.MustParseAddr(a)) {
			t.Errorf("%s refused", a)
		}
	}
	if !(egress{allowAll: true}).permitted(netip.MustParseAddr("127.0.0.1")) {
		t.Error("allowAll refuses loopback")
	}
	e = egress{allowed: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}}
	if !e.permitted(netip.MustParseAddr("10.20.3.4")) || e.permitted(netip.MustParseAddr("10.21.3.4")) {
		t.Error("allow-list not applied")
	}
	if e.control("tcp", "not-an-address", nil) == nil || e.control("tcp4", "127.0.0.1:80", nil) == nil || e.control("tcp4", "10.20.0.1:443", nil) != nil {
		t.Error("control")
	}
}
