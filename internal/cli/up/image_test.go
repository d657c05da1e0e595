package up

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeAgent writes a wrenn-agent stand-in: `prepare-images -check` runs check, the build runs build
// (shell), each after logging its arguments.
func fakeAgent(t *testing.T, check, build string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "wrenn-agent")
	script := "#!/bin/sh\necho \"args: $*\" >&2\ncase \"$*\" in\n*-check*) " + check + " ;;\nesac\n" + build + "\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func newImageUpper(t *testing.T, agent string) (*upper, *bytes.Buffer) {
	t.Helper()
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o700); err != nil {
		t.Fatal(err)
	}
	out := &bytes.Buffer{}
	return &upper{
		out: out, dir: dir, logs: logs, bins: binaries{agent: agent}, force: make(chan struct{}),
		cp: &child{done: make(chan struct{})}, agent: &child{done: make(chan struct{})},
	}, out
}

func readLog(t *testing.T, u *upper) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(u.logs, "base-image.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBaseImageCached(t *testing.T) {
	u, out := newImageUpper(t, fakeAgent(t, "exit 0", "exit 1"))
	if err := u.startBaseImage(context.Background()); err != nil {
		t.Fatal(err)
	}
	if u.imageBuild != nil || !strings.Contains(out.String(), "base image     cached") {
		t.Fatalf("build %v, output %q", u.imageBuild, out)
	}
	if err := u.waitBaseImage(context.Background()); err != nil {
		t.Fatal(err)
	}
	if log := readLog(t, u); !strings.Contains(log, "args: prepare-images -data-dir "+u.dir+" -name base -check") {
		t.Fatalf("log %q", log)
	}
}

func TestBaseImageBuilt(t *testing.T) {
	u, out := newImageUpper(t, fakeAgent(t, "exit 3", "sleep 0.2; echo built >&2"))
	if err := u.startBaseImage(context.Background()); err != nil {
		t.Fatal(err)
	}
	if u.imageBuild == nil || !strings.Contains(out.String(), "building in the background") {
		t.Fatalf("output %q", out)
	}
	if err := u.waitBaseImage(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "base image     built (waited") {
		t.Fatalf("output %q", out)
	}
	if log := readLog(t, u); !strings.Contains(log, "args: prepare-images -data-dir "+u.dir+" -name base\n") || !strings.Contains(log, "built\n") {
		t.Fatalf("log %q", log)
	}
}

func TestBaseImageBuildFails(t *testing.T) {
	u, out := newImageUpper(t, fakeAgent(t, "exit 3", "echo 'wrenn-agent: build image base: no debootstrap' >&2; exit 1"))
	if err := u.startBaseImage(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := u.waitBaseImage(context.Background()); err != nil {
		t.Fatal(err) // a failed build does not stop the platform
	}
	if !strings.Contains(out.String(), "BUILD FAILED: wrenn-agent: build image base: no debootstrap (log ") {
		t.Fatalf("output %q", out)
	}
}

func TestBaseImageCheckFails(t *testing.T) {
	u, _ := newImageUpper(t, fakeAgent(t, "echo 'wrenn-agent: image store: denied' >&2; exit 1", "exit 0"))
	err := u.startBaseImage(context.Background())
	if err == nil || !strings.Contains(err.Error(), "image store: denied") {
		t.Fatalf("startBaseImage = %v", err)
	}
}

// A stop cancels a build in progress (SIGTERM) and waits for the process to exit.
func TestBaseImageBuildStopped(t *testing.T) {
	u, _ := newImageUpper(t, fakeAgent(t, "exit 3", "trap 'kill $!; echo cancelled >&2; exit 1' TERM\nsleep 30 &\nwait"))
	if err := u.startBaseImage(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the trap is set
	start := time.Now()
	u.shutdown()
	if !u.imageBuild.exited() || time.Since(start) > 10*time.Second {
		t.Fatalf("build exited %v after %s", u.imageBuild.exited(), time.Since(start))
	}
	if log := readLog(t, u); !strings.Contains(log, "cancelled") {
		t.Fatalf("log %q", log)
	}
}
