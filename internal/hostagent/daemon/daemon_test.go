package daemon

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestClosersRunInReverse(t *testing.T) {
	var cs closers
	var order []string
	boom := errors.New("boom")
	for _, name := range []string{"network", "images", "capsules", "server"} {
		cs.add(name, func(context.Context) error {
			order = append(order, name)
			if name == "images" {
				return boom
			}
			return nil
		})
	}
	err := cs.closeAll(context.Background())
	if want := []string{"server", "capsules", "images", "network"}; !slices.Equal(order, want) {
		t.Fatalf("closed %v, want %v", order, want)
	}
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "images: boom") {
		t.Fatalf("closeAll = %v, want the failure named", err)
	}
	order = nil
	if err := cs.closeAll(context.Background()); err != nil || order != nil {
		t.Fatalf("second closeAll ran %v (%v)", order, err)
	}
}

func TestConfigCheck(t *testing.T) {
	ok := Config{MetricsInterval: time.Second, Subnet: netip.MustParsePrefix("10.11.0.0/16")}
	if err := ok.check(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.RegistrationToken = "x" }, "need -control-plane"},
		{func(c *Config) { c.Advertise = "10.0.0.1:1" }, "need -control-plane"},
		{func(c *Config) { c.MetricsInterval = time.Millisecond }, "-metrics-interval"},
		{func(c *Config) { c.MetricsInterval = time.Minute }, "-metrics-interval"},
		{func(c *Config) { c.MetricsIdleInterval = -time.Second }, "-metrics-idle-interval"},
		{func(c *Config) { c.MetricsIdleInterval = time.Hour }, "-metrics-idle-interval"},
		{func(c *Config) { c.Subnet = netip.Prefix{} }, "-subnet"},
	} {
		c := ok
		tc.mod(&c)
		if err := c.check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", c, err, tc.want)
		}
	}
	c := ok
	c.ControlPlane, c.RegistrationToken = "https://cp", "x"
	if err := c.check(); err != nil {
		t.Errorf("with a control plane: %v", err)
	}
}

func TestCapsuleDNS(t *testing.T) {
	if got, err := capsuleDNS("none"); err != nil || got != nil {
		t.Fatalf("none: %v %v", got, err)
	}
	if got, err := capsuleDNS(" 1.1.1.1, 2606:4700::1111"); err != nil || !slices.Equal(got, []string{"1.1.1.1", "2606:4700::1111"}) {
		t.Fatalf("list: %v %v", got, err)
	}
	if _, err := capsuleDNS("1.1.1.1,dns.example"); err == nil || !strings.Contains(err.Error(), "-dns") {
		t.Fatalf("name: %v", err)
	}
}

func TestParsePools(t *testing.T) {
	got, err := ParsePools("base=2, minimal=0")
	if err != nil || len(got) != 2 || got[0].TemplateID != "base" || got[0].Size != 2 || !got[0].AllowInternet ||
		got[1].TemplateID != "minimal" || got[1].Size != 0 {
		t.Fatalf("ParsePools = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "base", "base=", "=2", "base=-1", "base=x", "base=65"} {
		if _, err := ParsePools(bad); err == nil {
			t.Errorf("ParsePools(%q) accepted", bad)
		}
	}
}
