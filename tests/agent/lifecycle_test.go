package agent_test

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
)

// cycles is how many pause/resume rounds TestPauseResumeCycles runs.
func cycles() int {
	if n, err := strconv.Atoi(os.Getenv("WRENN_TEST_CYCLES")); err == nil && n > 0 {
		return n
	}
	return 50
}

// readInt reads a number the capsule wrote to path.
func (h *host) readInt(t *testing.T, id, path string) int {
	t.Helper()
	res, err := h.API.ReadFile(ctxT(t, 30*time.Second), connect.NewRequest(&hav1.ReadFileRequest{SandboxId: id, Path: path}))
	if err != nil {
		t.Fatalf("ReadFile %s: %v", path, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(res.Msg.Content)))
	if err != nil {
		t.Fatalf("%s holds %q", path, res.Msg.Content)
	}
	return n
}

// waitCounterAbove waits until the counter file shows more than n.
func (h *host) waitCounterAbove(t *testing.T, id string, n int) int {
	t.Helper()
	var v int
	eventually(t, 60*time.Second, "counter advancing", func() error {
		if v = h.readInt(t, id, "/tmp/counter"); v > n {
			return nil
		}
		return fmt.Errorf("counter %d, want > %d", v, n)
	})
	return v
}

const counterScript = `i=0; while :; do i=$((i+1)); echo $i > /tmp/counter.tmp; mv /tmp/counter.tmp /tmp/counter; sleep 0.1; done`

// startWorkload starts, in capsule id, a counter in the background, an HTTP
// server bound to loopback only (reached through envd's forwarder), and a
// PTY; it writes a file. It returns the PTY.
func (h *host) startWorkload(t *testing.T, id string) *pty {
	t.Helper()
	ctx := ctxT(t, time.Minute)
	if _, err := h.API.WriteFile(ctx, connect.NewRequest(&hav1.WriteFileRequest{SandboxId: id, Path: "/srv/index.html", Content: []byte("served from " + id)})); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	if _, err := h.API.WriteFile(ctx, connect.NewRequest(&hav1.WriteFileRequest{SandboxId: id, Path: "/root/data.txt", Content: []byte("precious data")})); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	for _, bg := range []*hav1.StartBackgroundRequest{
		{SandboxId: id, Tag: "counter", Cmd: "/bin/sh", Args: []string{"-c", counterScript}},
		{SandboxId: id, Tag: "httpd", Cmd: "/bin/busybox", Args: []string{"httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/srv"}},
	} {
		if _, err := h.API.StartBackground(ctx, connect.NewRequest(bg)); err != nil {
			t.Fatalf("StartBackground %s: %v", bg.Tag, err)
		}
	}
	p := h.attachPTY(t, id, "term", "/bin/sh")
	if _, err := h.API.PtySendInput(ctx, connect.NewRequest(&hav1.PtySendInputRequest{SandboxId: id, Tag: "term", Data: []byte("echo pty-$((40+2))\n")})); err != nil {
		t.Fatalf("PtySendInput: %v", err)
	}
	p.waitFor(t, "pty-42")
	return p
}

// checkWorkload verifies everything startWorkload set up still works.
func (h *host) checkWorkload(t *testing.T, id, hostIP string, counterBefore int, round int) int {
	t.Helper()
	eventually(t, 60*time.Second, "HTTP server through the forwarder", func() error {
		body, err := httpGet("http://" + hostIP + ":8080/index.html")
		if err != nil {
			return err
		}
		if body != "served from "+id && !strings.HasPrefix(body, "served from ") {
			return fmt.Errorf("body %q", body)
		}
		return nil
	})
	v := h.waitCounterAbove(t, id, counterBefore)
	res, err := h.API.ReadFile(ctxT(t, 30*time.Second), connect.NewRequest(&hav1.ReadFileRequest{SandboxId: id, Path: "/root/data.txt"}))
	if err != nil || string(res.Msg.Content) != "precious data" {
		t.Fatalf("data file after round %d: %q, %v", round, res.Msg.GetContent(), err)
	}
	p := h.attachPTY(t, id, "term", "")
	if !p.started.GetReconnected() {
		t.Fatalf("PTY reattach did not report reconnected: %+v", p.started)
	}
	marker := fmt.Sprintf("round-%d-42", round) // the echoed input shows $((6*7)), not 42
	if _, err := h.API.PtySendInput(ctxT(t, 30*time.Second), connect.NewRequest(&hav1.PtySendInputRequest{SandboxId: id, Tag: "term", Data: []byte("echo round-" + strconv.Itoa(round) + "-$((6*7))\n")})); err != nil {
		t.Fatalf("PtySendInput: %v", err)
	}
	p.waitFor(t, marker)
	p.close()
	return v
}

func TestPauseResumeCycles(t *testing.T) {
	h := newHost(t)
	c := h.create(t, nil)
	id := c.SandboxId
	if c.Status != hav1.SandboxStatus_SANDBOX_STATUS_RUNNING || c.HostIp == "" {
		t.Fatalf("create answered %+v", c)
	}
	if out := h.exec(t, id, "echo hello; id -u"); out != "hello\n0\n" {
		t.Fatalf("exec output %q", out)
	}
	p := h.startWorkload(t, id)
	p.close()
	counter := h.checkWorkload(t, id, c.HostIp, 0, 0)

	for round := 1; round <= cycles(); round++ {
		if _, err := h.API.PauseSandbox(ctxT(t, time.Minute), connect.NewRequest(&hav1.PauseSandboxRequest{SandboxId: id})); err != nil {
			t.Fatalf("round %d: pause: %v", round, err)
		}
		if _, _, err := h.tryExec(t, id, "true"); connect.CodeOf(err) != connect.CodeFailedPrecondition {
			t.Fatalf("round %d: exec in a paused capsule: %v", round, err)
		}
		before := counter
		res, err := h.API.ResumeSandbox(ctxT(t, time.Minute), connect.NewRequest(&hav1.ResumeSandboxRequest{SandboxId: id}))
		if err != nil {
			t.Fatalf("round %d: resume: %v\n%s", round, err, h.LogTail())
		}
		counter = h.checkWorkload(t, id, res.Msg.HostIp, before, round)
		// The counter continued from where it was: no restart from 1.
		if counter < before {
			t.Fatalf("round %d: counter went back from %d to %d", round, before, counter)
		}
	}

	procs, err := h.API.ListProcesses(ctxT(t, 30*time.Second), connect.NewRequest(&hav1.ListProcessesRequest{SandboxId: id}))
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, p := range procs.Msg.Processes {
		tags = append(tags, p.Tag)
	}
	for _, want := range []string{"counter", "httpd", "term"} {
		if !slices.Contains(tags, want) {
			t.Errorf("process %s missing after %d cycles: %v", want, cycles(), tags)
		}
	}

	if _, err := h.API.DestroySandbox(ctxT(t, time.Minute), connect.NewRequest(&hav1.DestroySandboxRequest{SandboxId: id})); err != nil {
		t.Fatal(err)
	}
	if _, err := h.API.DestroySandbox(ctxT(t, time.Minute), connect.NewRequest(&hav1.DestroySandboxRequest{SandboxId: id})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("second destroy: %v", err)
	}
	list, err := h.API.ListSandboxes(ctxT(t, 30*time.Second), connect.NewRequest(&hav1.ListSandboxesRequest{}))
	if err != nil || len(list.Msg.Sandboxes) != 0 {
		t.Fatalf("list after destroy: %v %v", list, err)
	}
	if err := tcpDial(c.HostIp + ":49983"); err == nil {
		t.Fatal("destroyed capsule's envd still answers")
	}
}

// checkMetadata verifies a create or resume answer carries the runtime
// versions (docs/api.md): this kernel, this agent binary's release,
// the envd it runs and the runsc version.
func (h *host) checkMetadata(t *testing.T, what string, md map[string]string) {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(h.Binary(), "-version").Output()
	if err != nil {
		t.Fatal(err)
	}
	agentVersion := strings.TrimPrefix(strings.TrimSpace(string(out)), "wrenn-agent ")
	out, err = exec.Command(h.Envd(), "-version").Output()
	if err != nil {
		t.Fatal(err)
	}
	_, envdVersion, _ := strings.Cut(strings.TrimSpace(string(out)), "(protocol ")
	envdVersion = strings.TrimSuffix(envdVersion, ")")
	want := map[string]string{
		"kernel_version": unix.ByteSliceToString(u.Release[:]),
		"agent_version":  agentVersion,
		"envd_version":   envdVersion,
	}
	for k, v := range want {
		if v == "" || md[k] != v {
			t.Errorf("%s: metadata %s = %q, want %q (metadata %v)", what, k, md[k], v, md)
		}
	}
	if v := md["runsc_version"]; v == "" || v == "VERSION_MISSING" {
		t.Errorf("%s: runsc_version %q (metadata %v)", what, v, md)
	}
	if md["image_id"] == "" {
		t.Errorf("%s: no image_id (metadata %v)", what, md)
	}
	t.Logf("%s: metadata %v", what, md)
}

// Create and resume report the capsule's runtime versions.
func TestRuntimeMetadata(t *testing.T) {
	h := newHost(t)
	c := h.create(t, nil)
	h.checkMetadata(t, "create", c.Metadata)
	if _, err := h.API.PauseSandbox(ctxT(t, time.Minute), connect.NewRequest(&hav1.PauseSandboxRequest{SandboxId: c.SandboxId})); err != nil {
		t.Fatalf("pause: %v", err)
	}
	// Resumed by a restarted agent: nothing is left in memory.
	h.Stop()
	h.Start()
	res, err := h.API.ResumeSandbox(ctxT(t, time.Minute), connect.NewRequest(&hav1.ResumeSandboxRequest{SandboxId: c.SandboxId}))
	if err != nil {
		t.Fatalf("resume: %v\n%s", err, h.LogTail())
	}
	h.checkMetadata(t, "resume", res.Msg.Metadata)
	if res.Msg.Metadata["runsc_version"] != c.Metadata["runsc_version"] {
		t.Errorf("runsc_version changed from %q to %q", c.Metadata["runsc_version"], res.Msg.Metadata["runsc_version"])
	}
}
