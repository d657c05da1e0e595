package gvisor

import (
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/process"
	"github.com/wrenn/wrenn/api/envd/process/processconnect"
	"github.com/wrenn/wrenn/internal/hostagent/runtime"
	"github.com/wrenn/wrenn/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// runscBinary is the runsc the tests drive (testutil.Runsc).
func runscBinary(t *testing.T) string { return testutil.Runsc(t) }

// busybox is Debian's busybox-static, the whole userland of the test image.
const busybox = "/bin/busybox"

// newRootfs builds a minimal image: a static busybox with its applets,
// root in /etc/passwd and /etc/group.
func newRootfs(t *testing.T) string {
	t.Helper()
	if err := checkStatic(busybox); err != nil {
		testutil.SkipUnlessCI(t, "needs a static %s (busybox-static): %v", busybox, err)
	}
	root := t.TempDir()
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "proc", "dev", "sys"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), src, 0o755); err != nil {
		t.Fatal(err)
	}
	// What `busybox --install -s` does, with links that resolve inside the image.
	list, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		t.Fatalf("busybox --list-full: %v", err)
	}
	for _, applet := range strings.Fields(string(list)) {
		link := filepath.Join(root, applet)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/bin/busybox", link); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":  "root:x:0:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// checkStatic fails unless path is an ELF executable without an interpreter.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked")
		}
	}
	return nil
}

// fixture is a Runtime over fresh directories with everything a capsule
// needs: image, envd, a cgroup parent of its own.
type fixture struct {
	rt     *Runtime
	root   string // parent of the runtime's directories
	image  runtime.Image
	envd   string
	cgroup string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	testutil.Integration(t)
	bin := runscBinary(t)
	f := &fixture{
		root:   t.TempDir(),
		image:  runtime.Image{ID: "test", Path: newRootfs(t)},
		envd:   testutil.BuildBinary(t, testutil.EnvdPackage),
		cgroup: "/" + testutil.RandomName("wrenn-test-", 8),
	}
	// Registered first, so it runs after the capsules are destroyed.
	t.Cleanup(func() { removeCgroupParent(t, f.cgroup) })
	rt, err := New(Config{
		Runsc:        bin,
		StateDir:     filepath.Join(f.root, "state"),
		CapsulesDir:  filepath.Join(f.root, "capsules"),
		Log:          slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		CgroupParent: f.cgroup,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.rt = rt
	return f
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// removeCgroupParent removes the (by now empty) parent cgroup runsc created
// in every hierarchy.
func removeCgroupParent(t *testing.T, parent string) {
	dirs, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", parent))
	dirs = append(dirs, filepath.Join(cgroupRoot, parent))
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("remove cgroup %s: %v", d, err)
		}
	}
}

// capsuleNet is a network namespace prepared for one capsule.
type capsuleNet struct {
	testutil.Netns
	runtime.Network
}

func newNet(t *testing.T) capsuleNet {
	t.Helper()
	ns := testutil.NewNetns(t)
	return capsuleNet{Netns: ns, Network: runtime.Network{
		NetnsPath: "/var/run/netns/" + ns.Name,
		Interface: ns.InsideVeth,
		Address:   ns.InsideIP + "/30",
		Gateway:   ns.HostIP,
	}}
}

// spec returns a capsule spec for id in n, with its own metadata directory.
func (f *fixture) spec(t *testing.T, id string, n capsuleNet) runtime.Spec {
	t.Helper()
	meta := t.TempDir()
	b, _ := json.Marshal(map[string]string{"sandbox_id": id, "template_id": "test"})
	if err := os.WriteFile(filepath.Join(meta, "metadata.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return runtime.Spec{
		ID: id, VCPUs: 1, MemoryMB: 256, DiskMB: 256,
		Image: f.image, Network: n.Network, MetadataDir: meta, Envd: f.envd,
	}
}

// destroyAtEnd makes sure capsule id is gone when the test ends.
func (f *fixture) destroyAtEnd(t *testing.T, id string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if t.Failed() {
			log := filepath.Join(f.rt.capsuleDir(id), consoleLog)
			if b := readFrom(log, 0); len(b) > 0 {
				t.Logf("%s of %s:\n%s", consoleLog, id, b)
			}
		}
		if err := f.rt.Destroy(ctx, id); err != nil {
			t.Errorf("destroy %s: %v", id, err)
		}
	})
}

// runscProcs lists runsc processes (sandbox, gofer, runsc itself) of this
// fixture's state directory that mention match.
func (f *fixture) runscProcs(match string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmdline, "runsc") && strings.Contains(cmdline, f.root) && strings.Contains(cmdline, match) {
			out = append(out, e.Name()+": "+cmdline)
		}
	}
	return out
}

// mounts lists mount points under the fixture's directories.
func (f *fixture) mounts(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if fields := strings.Fields(line); len(fields) > 1 &&
			(strings.HasPrefix(fields[1], f.root) || strings.HasPrefix(fields[1], f.image.Path)) {
			out = append(out, line)
		}
	}
	return out
}

// envdClient talks to the envd of one capsule. Keep-alives are off: a
// connection does not survive a pause.
type envdClient struct {
	url  string
	http *http.Client
	proc processconnect.ProcessClient
}

func newEnvdClient(ip string) *envdClient {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	url := "http://" + ip + ":49983"
	return &envdClient{url: url, http: c, proc: processconnect.NewProcessClient(c, url, connect.WithProtoJSON())}
}

// waitHealthy polls /health until it answers 200 and returns how long that
// took.
func (e *envdClient) waitHealthy(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/health", nil)
		resp, err := e.http.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				cancel()
				return time.Since(start)
			}
			err = fmt.Errorf("GET /health: %s", resp.Status)
		}
		cancel()
		last = err
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("envd at %s not healthy: %v", e.url, last)
	return 0
}

func (e *envdClient) do(t *testing.T, method, path, ctype string, body io.Reader) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, e.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (e *envdClient) writeFile(t *testing.T, path, content string) {
	t.Helper()
	code, b := e.do(t, http.MethodPost, "/files?username=root&path="+path, "application/octet-stream", strings.NewReader(content))
	if code != http.StatusOK {
		t.Fatalf("POST /files %s: %d %s", path, code, b)
	}
}

func (e *envdClient) readFile(t *testing.T, path string) string {
	t.Helper()
	code, b := e.do(t, http.MethodGet, "/files?username=root&path="+path, "", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /files %s: %d %s", path, code, b)
	}
	return string(b)
}

// prepareSnapshot quiesces envd before a pause, as the agent does.
func (e *envdClient) prepareSnapshot(t *testing.T) {
	t.Helper()
	if code, b := e.do(t, http.MethodPost, "/snapshot/prepare", "", nil); code/100 != 2 {
		t.Fatalf("POST /snapshot/prepare: %d %s", code, b)
	}
}

// counterFile is where the background counter writes its count.
const counterFile = "/tmp/counter"

// startCounter starts a shell that increments a number in counterFile
// every 20 ms and returns its pid. The request has no deadline (a deadline
// would kill the process); the stream is dropped once the process started.
func (e *envdClient) startCounter(t *testing.T) uint32 {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	script := "i=0; while :; do i=$((i+1)); echo $i > " + counterFile + ".new; mv " + counterFile + ".new " + counterFile + "; sleep 0.02; done"
	s, err := e.proc.Start(ctx, connect.NewRequest(&process.StartRequest{
		Process: &process.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", script}},
	}))
	if err != nil {
		t.Fatalf("start counter: %v", err)
	}
	defer s.Close()
	if !s.Receive() || s.Msg().GetEvent().GetStart() == nil {
		t.Fatalf("start counter: no start event: %v", s.Err())
	}
	return s.Msg().GetEvent().GetStart().GetPid()
}

// startHolder starts a process that keeps 8 MiB of random data (base64)
// in its own memory and writes the data's checksum to /tmp/held.want; it
// answers each /tmp/held.ask with the checksum of what it holds then, in
// /tmp/held.got (heldSum asks). It returns the first checksum.
func (e *envdClient) startHolder(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	script := `x=$(dd if=/dev/urandom bs=1M count=8 2>/dev/null | base64 | tr -d '\n'); ` +
		`echo -n "$x" | sha256sum > /tmp/held.new && mv /tmp/held.new /tmp/held.want; ` +
		`while :; do if [ -e /tmp/held.ask ]; then rm /tmp/held.ask; ` +
		`echo -n "$x" | sha256sum > /tmp/held.new && mv /tmp/held.new /tmp/held.got; fi; sleep 0.05; done`
	s, err := e.proc.Start(ctx, connect.NewRequest(&process.StartRequest{
		Process: &process.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", script}},
	}))
	if err != nil {
		t.Fatalf("start holder: %v", err)
	}
	defer s.Close()
	if !s.Receive() || s.Msg().GetEvent().GetStart() == nil {
		t.Fatalf("start holder: no start event: %v", s.Err())
	}
	return e.sh(t, "i=0; while [ ! -e /tmp/held.want ] && [ $i -lt 250 ]; do sleep 0.1; i=$((i+1)); done; cat /tmp/held.want")
}

// heldSum asks the process startHolder started for the checksum of the
// data it holds now.
func (e *envdClient) heldSum(t *testing.T) string {
	t.Helper()
	return e.sh(t, "rm -f /tmp/held.got; touch /tmp/held.ask; i=0; "+
		"while [ ! -e /tmp/held.got ] && [ $i -lt 250 ]; do sleep 0.1; i=$((i+1)); done; cat /tmp/held.got")
}

// count reads the counter, waiting for it to be written at least once.
func (e *envdClient) count(t *testing.T) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, b := e.do(t, http.MethodGet, "/files?username=root&path="+counterFile, "", nil)
		var n int
		if code == http.StatusOK {
			if _, err := fmt.Sscanf(string(b), "%d", &n); err == nil {
				return n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("counter not readable: %d %s", code, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// processes lists the pids envd runs.
func (e *envdClient) processes(t *testing.T) map[uint32]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := e.proc.List(ctx, connect.NewRequest(&process.ListRequest{}))
	if err != nil {
		t.Fatalf("process list: %v", err)
	}
	pids := map[uint32]bool{}
	for _, p := range resp.Msg.GetProcesses() {
		pids[p.GetPid()] = true
	}
	return pids
}

// requireCounting asserts the counter is at least from and still advancing.
func (e *envdClient) requireCounting(t *testing.T, pid uint32, from int) {
	t.Helper()
	if !e.processes(t)[pid] {
		t.Fatalf("counter process %d is not running", pid)
	}
	n := e.count(t)
	if n < from {
		t.Fatalf("counter is %d, was %d before: it started over", n, from)
	}
	deadline := time.Now().Add(30 * time.Second)
	for e.count(t) <= n {
		if time.Now().After(deadline) {
			t.Fatalf("counter stuck at %d", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sh runs script with /bin/sh in the capsule, waits for it and returns its
// output; a non-zero exit fails the test.
func (e *envdClient) sh(t *testing.T, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := e.proc.Start(ctx, connect.NewRequest(&process.StartRequest{
		Process: &process.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", script}},
	}))
	if err != nil {
		t.Fatalf("start %q: %v", script, err)
	}
	defer s.Close()
	var out []byte
	for s.Receive() {
		ev := s.Msg().GetEvent()
		if d := ev.GetData(); d != nil {
			out = append(out, d.GetStdout()...)
			out = append(out, d.GetStderr()...)
		}
		if end := ev.GetEnd(); end != nil {
			if end.GetExitCode() != 0 {
				t.Fatalf("%q: exit code %d: %s", script, end.GetExitCode(), out)
			}
			return string(out)
		}
	}
	t.Fatalf("%q: no end event: %v", script, s.Err())
	return ""
}
