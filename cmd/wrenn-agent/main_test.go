package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/hostagent/enroll/enrolltest"
	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/agenthost"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func TestAgentRefusesBadRegistration(t *testing.T) {
	cp := enrolltest.New(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-control-plane", cp.URL}, "no registration token"},
		{[]string{"-control-plane", cp.URL, "-registration-token", "wrong"}, "invalid, used or expired"},
		{[]string{"-control-plane", cp.URL, "-registration-token", "x", "-advertise", "0.0.0.0:1"}, "wildcard"},
		{[]string{"-registration-token", "x"}, "need -control-plane"},
	} {
		h := agenthost.Start(t, agenthost.Options{NoWait: true, Args: tc.args})
		select {
		case <-h.Exited():
		case <-time.After(30 * time.Second):
			t.Fatalf("%v: agent did not exit", tc.args)
		}
		if log := h.LogTail(); !strings.Contains(log, tc.want) {
			t.Errorf("%v: log lacks %q:\n%s", tc.args, tc.want, log)
		}
	}
}

// TestParseFlags checks that flags land in the daemon's Config and that malformed values are refused
// with the flag's name.
func TestParseFlags(t *testing.T) {
	t.Setenv("WRENN_CONTROL_PLANE", "")
	t.Setenv("WRENN_ON_SHUTDOWN", "")
	c, version, err := parseFlags([]string{"-listen", "127.0.0.1:1", "-subnet", "10.20.0.0/16", "-on-shutdown", "pause",
		"-metrics-interval", "1s", "-dns", "none", "-data-dir", "/srv/w"})
	if err != nil || version {
		t.Fatalf("parseFlags: %v %v", err, version)
	}
	if c.Listen != "127.0.0.1:1" || c.Subnet.String() != "10.20.0.0/16" || c.OnShutdown != "pause" ||
		c.MetricsInterval != time.Second || c.DNS != "none" || c.DataDir != "/srv/w" || c.Log == nil || c.Version != release {
		t.Fatalf("config %+v", c)
	}
	if c.BufferedCheckpoints {
		t.Fatal("checkpoints go through the page cache by default; want O_DIRECT (-checkpoint-direct)")
	}
	if c, _, err := parseFlags([]string{"-checkpoint-direct=false"}); err != nil || !c.BufferedCheckpoints {
		t.Fatalf("-checkpoint-direct=false: BufferedCheckpoints %v, %v", c.BufferedCheckpoints, err)
	}
	t.Setenv("WRENN_EGRESS_ALLOW", "192.168.7.9/24")
	if c, _, err := parseFlags(nil); err != nil || fmt.Sprint(c.EgressAllow) != "[192.168.7.0/24]" {
		t.Fatalf("WRENN_EGRESS_ALLOW: %v %v", c.EgressAllow, err)
	}
	if c, _, err := parseFlags([]string{"-egress-allow", "10.1.2.0/24, 172.16.0.5"}); err != nil || fmt.Sprint(c.EgressAllow) != "[10.1.2.0/24 172.16.0.5/32]" {
		t.Fatalf("-egress-allow: %v %v", c.EgressAllow, err)
	}
	if _, version, err := parseFlags([]string{"-version", "-subnet", "bad"}); err != nil || !version {
		t.Fatalf("-version: %v %v", version, err)
	}
	for _, tc := range []struct{ args []string }{
		{[]string{"-subnet", "10.20.0.0"}},
		{[]string{"-on-shutdown", "sleep"}},
		{[]string{"-log-format", "xml"}},
		{[]string{"-log-level", "loud"}},
		{[]string{"-egress-allow", "10.1.2.0/24,lan"}},
		{[]string{"-egress-allow", "fd00::/8"}},
	} {
		_, _, err := parseFlags(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.args[0]+":") {
			t.Errorf("%v: error %v, want one naming %s", tc.args, err, tc.args[0])
		}
	}
}
