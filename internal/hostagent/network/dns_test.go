package network

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

func TestParseNameservers(t *testing.T) {
	conf := []byte(`# comment
nameserver 127.0.0.53
nameserver 10.255.255.53
nameserver fe80::1%eth0
nameserver ::1
nameserver 2001:db8::53
nameserver not-an-ip
search example.test
options edns0
`)
	got := ParseNameservers(conf)
	if want := []string{"10.255.255.53", "2001:db8::53"}; !slices.Equal(got, want) {
		t.Fatalf("ParseNameservers = %v, want %v", got, want)
	}
	if got := ParseNameservers([]byte("nameserver 127.0.0.53\n")); len(got) != 0 {
		t.Fatalf("only a loopback stub: %v", got)
	}
}

func TestCheckEgress(t *testing.T) {
	subnet := netip.MustParsePrefix("10.11.0.0/16")
	dns, allow, err := checkEgress(subnet,
		[]netip.Addr{netip.MustParseAddr("192.168.1.53"), netip.MustParseAddr("2001:db8::53"), netip.MustParseAddr("10.11.0.1")},
		[]netip.Prefix{netip.MustParsePrefix("192.168.7.9/24")})
	if err != nil || fmt.Sprint(dns) != "[192.168.1.53]" || fmt.Sprint(allow) != "[192.168.7.0/24]" {
		t.Errorf("checkEgress = %v, %v, %v; want the IPv4 DNS server outside the capsule subnet and the masked prefix", dns, allow, err)
	}
	for _, bad := range []string{"10.0.0.0/8", "10.11.3.4/32", "fd00::/8"} {
		if _, _, err := checkEgress(subnet, nil, []netip.Prefix{netip.MustParsePrefix(bad)}); err == nil {
			t.Errorf("checkEgress accepted allow %s", bad)
		}
	}
}
