package network

import (
	"net/netip"
	"testing"
)

func TestPool(t *testing.T) {
	p, err := newPool(netip.MustParsePrefix("10.11.0.0/16"))
	if err != nil {
		t.Fatal(err)
	}
	if p.size != 16384 {
		t.Errorf("size = %d, want 16384", p.size)
	}
	for _, tc := range []struct {
		slot          int
		host, capsule string
	}{
		{0, "10.11.0.1", "10.11.0.2"},
		{5, "10.11.0.21", "10.11.0.22"},
		{16383, "10.11.255.253", "10.11.255.254"},
	} {
		if got := p.hostIP(tc.slot).String(); got != tc.host {
			t.Errorf("hostIP(%d) = %s, want %s", tc.slot, got, tc.host)
		}
		if got := p.capsuleIP(tc.slot).String(); got != tc.capsule {
			t.Errorf("capsuleIP(%d) = %s, want %s", tc.slot, got, tc.capsule)
		}
		for _, a := range []string{tc.host, tc.capsule} {
			if s, ok := p.slotOf(netip.MustParseAddr(a)); !ok || s != tc.slot {
				t.Errorf("slotOf(%s) = %d, %t; want %d", a, s, ok, tc.slot)
			}
		}
	}
	if _, ok := p.slotOf(netip.MustParseAddr("10.12.0.1")); ok {
		t.Error("slotOf(10.12.0.1) found a slot outside the subnet")
	}

	for _, bad := range []string{"fd00::/64", "10.11.0.1/16", "10.11.0.0/31", "10.0.0.0/7"} {
		if _, err := newPool(netip.MustParsePrefix(bad)); err == nil {
			t.Errorf("newPool(%s) succeeded", bad)
		}
	}
}

func TestNames(t *testing.T) {
	p, _ := newPool(netip.MustParsePrefix("10.11.0.0/16"))
	for name, want := range map[string]int{"wrnh0": 0, "wrnh12": 12, "wrnh16383": 16383} {
		if got, ok := p.parseHostIf("wrn", name); !ok || got != want {
			t.Errorf("parseHostIf(%s) = %d, %t; want %d", name, got, ok, want)
		}
	}
	for _, name := range []string{"wrnh", "wrnh012", "wrnh16384", "wrnhx", "wrnh1a", "wrn-1", "eth0", "wrnxh1"} {
		if _, ok := p.parseHostIf("wrn", name); ok {
			t.Errorf("parseHostIf(%s) accepted", name)
		}
	}
	if got := hostIfName("wrn", 12); got != "wrnh12" {
		t.Errorf("hostIfName = %s", got)
	}
	if err := checkPrefix("wrn", p.size); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"", "Wrn", "1wrn", "wr-n", "abcdefghij"} {
		if err := checkPrefix(bad, p.size); err == nil {
			t.Errorf("checkPrefix(%q) accepted", bad)
		}
	}
	for _, id := range []string{"cl-abc123", "a", "x.y_z"} {
		if err := checkID(id); err != nil {
			t.Error(err)
		}
	}
	for _, id := range []string{"", "-x", "a/b", "..", "a b"} {
		if err := checkID(id); err == nil {
			t.Errorf("checkID(%q) accepted", id)
		}
	}
}

func TestElementKey(t *testing.T) {
	e := element{ifname: "wrnh12", addr: netip.MustParseAddr("10.11.0.50")}
	k := e.key()
	if len(k) != 20 {
		t.Fatalf("key length %d, want 20", len(k))
	}
	got, ok := parseElement(k)
	if !ok || got != e {
		t.Errorf("parseElement = %+v, %t; want %+v", got, ok, e)
	}
}
