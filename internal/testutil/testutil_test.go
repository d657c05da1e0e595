package testutil

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"testing"
)

func TestFlagValue(t *testing.T) {
	tests := []struct {
		args []string
		name string
		want string
		ok   bool
	}{
		{[]string{"-addr", "1:2"}, "addr", "1:2", true},
		{[]string{"--addr=1:2"}, "addr", "1:2", true},
		{[]string{"-forward-ports=false"}, "forward-ports", "false", true},
		{[]string{"-address", "x"}, "addr", "", false},
		{[]string{"addr"}, "addr", "", false},
	}
	for _, tt := range tests {
		got, ok := flagValue(tt.args, tt.name)
		if got != tt.want || ok != tt.ok {
			t.Errorf("flagValue(%q, %q) = %q, %v; want %q, %v", tt.args, tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestProcStatus(t *testing.T) {
	rss, err := ProcRSS(os.Getpid())
	if err != nil || rss <= 0 {
		t.Fatalf("ProcRSS = %d, %v", rss, err)
	}
	peak, err := ProcPeakRSS(os.Getpid())
	if err != nil || peak < rss {
		t.Fatalf("ProcPeakRSS = %d, %v (rss %d)", peak, err, rss)
	}
	n, err := OpenFDs(os.Getpid())
	if err != nil || n < 3 {
		t.Fatalf("OpenFDs = %d, %v", n, err)
	}
	if _, err := ProcRSS(-1); err == nil {
		t.Fatal("ProcRSS(-1) succeeded")
	}
}

func TestDescendants(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	for range 100 {
		if d := Descendants(os.Getpid()); len(d) >= 2 {
			return
		}
		exec.Command("sleep", "0.01").Run()
	}
	t.Fatalf("Descendants(%d) = %v, want the shell and its sleep", os.Getpid(), Descendants(os.Getpid()))
}

func TestCreateUserAndNetns(t *testing.T) {
	Integration(t)
	var name string
	var ns Netns
	t.Run("create", func(t *testing.T) {
		name = RandomName("wrnt", 8)
		u := CreateUser(t, name)
		if st, err := os.Stat(u.Home); err != nil || !st.IsDir() {
			t.Fatalf("home %s: %v", u.Home, err)
		}
		ns = NewNetns(t)
		ln, err := net.Listen("tcp", ns.HostIP+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		dial := fmt.Sprintf("echo > /dev/tcp/%s/%d", ns.HostIP, ln.Addr().(*net.TCPAddr).Port)
		if out, err := exec.Command("ip", "netns", "exec", ns.Name, "timeout", "5", "bash", "-c", dial).CombinedOutput(); err != nil {
			t.Fatalf("connect to the host side from the namespace: %v\n%s", err, out)
		}
	})
	if _, err := user.Lookup(name); err == nil {
		t.Errorf("user %s still exists after cleanup", name)
	}
	if err := exec.Command("ip", "netns", "exec", ns.Name, "true").Run(); err == nil {
		t.Errorf("namespace %s still exists after cleanup", ns.Name)
	}
	if err := exec.Command("ip", "link", "show", ns.HostVeth).Run(); err == nil {
		t.Errorf("veth %s still exists after cleanup", ns.HostVeth)
	}
}
