package testutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// EnvdPackage is the import path of the envd command.
const EnvdPackage = "github.com/wrenn/wrenn/cmd/envd"

// EnvdBinEnv names an environment variable that points the tests at a
// prebuilt envd (e.g. a release build) instead of building cmd/envd.
const EnvdBinEnv = "WRENN_ENVD_BIN"

// Envd is a running envd binary owned by a test.
type Envd struct {
	URL  string // base URL, e.g. http://127.0.0.1:40123
	Addr string // host:port the URL points at
	PID  int
	Bin  string // the binary, for starting more instances

	cmd     *exec.Cmd
	done    chan struct{}
	logPath string
}

// EnvdOptions configure StartEnvdWith.
type EnvdOptions struct {
	// Netns runs envd inside this network namespace (ip netns exec). The
	// default address is then 0.0.0.0:49983 and Host must be set.
	Netns string
	// Host is the address the test reaches envd at, when it differs from
	// the listen address (namespaces, 0.0.0.0).
	Host string
	// Args are extra envd flags. -addr, -forward-ports, -run-dir and
	// -metadata-file given here replace the test defaults.
	Args []string
	// NoHostProfile runs envd in a private mount namespace where root's shell start-up files are
	// empty (see withoutHostProfile). envd then no longer sees mounts the test makes afterwards.
	NoHostProfile bool
}

// StartEnvd runs envd on a free loopback port with port forwarding off and
// waits until GET /health answers. It is stopped (and whatever it spawned
// killed) when the test ends.
func StartEnvd(t testing.TB, args ...string) *Envd {
	t.Helper()
	return StartEnvdWith(t, EnvdOptions{Args: args})
}

// StartEnvdWith is StartEnvd with options.
func StartEnvdWith(t testing.TB, o EnvdOptions) *Envd {
	t.Helper()
	bin := os.Getenv(EnvdBinEnv)
	if bin == "" {
		bin = BuildBinary(t, EnvdPackage)
	}
	tmp := t.TempDir()
	args := append([]string(nil), o.Args...)

	addr, explicit := flagValue(args, "addr")
	switch {
	case explicit:
	case o.Netns != "":
		addr = "0.0.0.0:49983"
		args = append(args, "-addr", addr)
	default:
		addr = "127.0.0.1:" + fmt.Sprint(FreePort(t))
		args = append(args, "-addr", addr)
	}
	if explicit && o.Netns == "" {
		// A fixed port taken by someone else would answer /health for us.
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("envd address %s is not free: %v", addr, err)
		}
		_ = ln.Close()
	}
	if _, ok := flagValue(args, "forward-ports"); !ok {
		args = append(args, "-forward-ports=false")
	}
	if _, ok := flagValue(args, "run-dir"); !ok {
		args = append(args, "-run-dir", filepath.Join(tmp, "run"))
	}
	if _, ok := flagValue(args, "metadata-file"); !ok {
		args = append(args, "-metadata-file", filepath.Join(tmp, "metadata.json"))
	}

	reach := addr
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("envd address %q: %v", addr, err)
	}
	switch {
	case o.Host != "":
		reach = net.JoinHostPort(o.Host, port)
	case host == "" || host == "0.0.0.0":
		reach = net.JoinHostPort("127.0.0.1", port)
	}

	var cmd *exec.Cmd
	if o.Netns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", o.Netns, bin}, args...)...)
	} else if o.NoHostProfile {
		cmd = withoutHostProfile(bin, args)
	} else {
		cmd = exec.Command(bin, args...)
	}
	logPath := filepath.Join(tmp, "envd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		t.Fatalf("start envd: %v", err)
	}
	e := &Envd{
		URL: "http://" + reach, Addr: reach, PID: cmd.Process.Pid, Bin: bin,
		cmd: cmd, done: make(chan struct{}), logPath: logPath,
	}
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(e.done)
	}()
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			t.Logf("envd log (%s):\n%s", e.URL, e.LogTail(16<<10))
		}
	})
	if err := e.waitHealthy(60 * time.Second); err != nil {
		t.Fatalf("envd did not become healthy: %v\nlog:\n%s", err, e.LogTail(16<<10))
	}
	return e
}

// Alive reports whether the envd process started by the test still runs.
func (e *Envd) Alive() bool {
	select {
	case <-e.done:
		return false
	default:
		return true
	}
}

// LogTail returns up to n bytes from the end of envd's output.
func (e *Envd) LogTail(n int) string {
	b, err := os.ReadFile(e.logPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func (e *Envd) waitHealthy(limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	client := &http.Client{Timeout: 10 * time.Second}
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.URL+"/health", nil)
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
			err = fmt.Errorf("GET /health: %s", resp.Status)
		}
		last = err
		select {
		case <-e.done:
			return fmt.Errorf("envd exited: %v", e.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop asks envd to shut down, kills it when it does not, and then kills
// every process it had spawned that is still alive, so no test leaves
// orphans behind.
func (e *Envd) stop() {
	desc := Descendants(e.PID)
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
	}
	for _, pid := range desc {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// flagValue finds -name / --name given as "-name v" or "-name=v".
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		trimmed := strings.TrimLeft(a, "-")
		if trimmed == a {
			continue
		}
		if trimmed == name {
			if i+1 < len(args) {
				return args[i+1], true
			}
			return "", true
		}
		if v, ok := strings.CutPrefix(trimmed, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// Descendants lists the pids of all live descendants of pid.
func Descendants(pid int) []int {
	children := map[int][]int{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	for _, ent := range ents {
		var p int
		if _, err := fmt.Sscanf(ent.Name(), "%d", &p); err != nil {
			continue
		}
		pp, err := parentPID(p)
		if err != nil {
			continue
		}
		children[pp] = append(children[pp], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

func parentPID(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may contain spaces and parentheses: parse after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	var state string
	var ppid int
	if _, err := fmt.Sscanf(s[i+1:], " %s %d", &state, &ppid); err != nil {
		return 0, err
	}
	return ppid, nil
}

// hostProfiles are the login and interactive start-up files of root on the test machine.
var hostProfiles = []string{"/root/.profile", "/root/.bash_profile", "/root/.bash_login", "/root/.bashrc"}

// withoutHostProfile runs bin with args, as root in a private mount namespace where root's shell
// start-up files are empty: envd on the host runs `bash -l` as root for an SDK command with user
// root, and what the machine's profile does (a pyenv rehash that waits a minute on a stale lock,
// seen here) is not the tests' business. The mounts stay in that namespace; exec keeps the PID.
func withoutHostProfile(bin string, args []string) *exec.Cmd {
	if os.Geteuid() != 0 {
		return exec.Command(bin, args...)
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return exec.Command(bin, args...)
	}
	script := `for f in ` + strings.Join(hostProfiles, " ") + `; do [ -e "$f" ] && mount --bind /dev/null "$f"; done; exec "$0" "$@"`
	return exec.Command(unshare, append([]string{"--mount", "--propagation", "private", "/bin/sh", "-c", script, bin}, args...)...)
}
