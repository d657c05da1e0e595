package agent_test

import (
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/testutil"
)

// A snapshot template starts new capsules with the snapshot's files and
// running processes, each with its own identity and network.
func TestSnapshotTemplate(t *testing.T) {
	h := newHost(t)
	src := h.create(t, func(r *hav1.CreateSandboxRequest) { r.DefaultEnv = map[string]string{"FROM_TEMPLATE": "yes"} })
	p := h.startWorkload(t, src.SandboxId)
	p.close()
	before := h.waitCounterAbove(t, src.SandboxId, 0)

	snap, err := h.API.CreateSnapshot(ctxT(t, time.Minute), connect.NewRequest(&hav1.CreateSnapshotRequest{SandboxId: src.SandboxId, TeamId: "team-test", TemplateId: "tpl-1"}))
	if err != nil {
		t.Fatalf("CreateSnapshot: %v\n%s", err, h.LogTail())
	}
	if snap.Msg.SizeBytes <= 0 {
		t.Fatalf("snapshot size %d", snap.Msg.SizeBytes)
	}
	if _, err := h.API.CreateSnapshot(ctxT(t, time.Minute), connect.NewRequest(&hav1.CreateSnapshotRequest{SandboxId: src.SandboxId, TeamId: "team-test", TemplateId: "tpl-1"})); connect.CodeOf(err) != connect.CodeAlreadyExists {
		t.Fatalf("second snapshot under the same id: %v", err)
	}

	var wg sync.WaitGroup
	clones := make([]*hav1.CreateSandboxResponse, 2)
	for i := range clones {
		wg.Add(1)
		go func() {
			defer wg.Done()
			clones[i] = h.create(t, func(r *hav1.CreateSandboxRequest) { r.TeamId = "team-test"; r.TemplateId = "tpl-1" })
		}()
	}
	wg.Wait()
	if clones[0].HostIp == clones[1].HostIp {
		t.Fatalf("clones share an address: %s", clones[0].HostIp)
	}
	for _, c := range clones {
		id := c.SandboxId
		// Files and processes of the snapshot are there and running.
		h.checkWorkload(t, id, c.HostIp, before, 1)
		if got := strings.TrimSpace(h.exec(t, id, "cat /run/wrenn/sandbox_id")); got != id {
			t.Errorf("clone %s believes it is %q", id, got)
		}
		if got := strings.TrimSpace(h.exec(t, id, "echo $FROM_TEMPLATE")); got != "yes" {
			t.Errorf("template default env lost: %q", got)
		}
		// Its changes are its own.
		h.exec(t, id, "echo "+id+" > /root/who")
	}
	for _, c := range clones {
		if got := strings.TrimSpace(h.exec(t, c.SandboxId, "cat /root/who")); got != c.SandboxId {
			t.Errorf("clones share files: %s sees %q", c.SandboxId, got)
		}
	}

	// The source stays paused and resumes normally.
	res, err := h.API.ResumeSandbox(ctxT(t, time.Minute), connect.NewRequest(&hav1.ResumeSandboxRequest{SandboxId: src.SandboxId}))
	if err != nil {
		t.Fatalf("resume source: %v", err)
	}
	h.checkWorkload(t, src.SandboxId, res.Msg.HostIp, before, 2)

	// Deleting the template does not affect capsules made from it.
	if _, err := h.API.DeleteSnapshot(ctxT(t, time.Minute), connect.NewRequest(&hav1.DeleteSnapshotRequest{TeamId: "team-test", TemplateId: "tpl-1"})); err != nil {
		t.Fatal(err)
	}
	if _, err := h.API.DeleteSnapshot(ctxT(t, time.Minute), connect.NewRequest(&hav1.DeleteSnapshotRequest{TeamId: "team-test", TemplateId: "tpl-1"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("second delete: %v", err)
	}
	_, err = h.API.CreateSandbox(ctxT(t, time.Minute), connect.NewRequest(&hav1.CreateSandboxRequest{SandboxId: newID(), TeamId: "team-test", TemplateId: "tpl-1", Vcpus: 1, MemoryMb: 256}))
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("create from a deleted template: %v", err)
	}
	h.exec(t, clones[0].SandboxId, "test -f /root/data.txt")
}

// Twenty capsules at once.
func TestConcurrentCapsules(t *testing.T) {
	h := newHost(t)
	const n = 20
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := newID()
			_, err := h.API.CreateSandbox(ctxT(t, 3*time.Minute), connect.NewRequest(&hav1.CreateSandboxRequest{SandboxId: id, Vcpus: 1, MemoryMb: 128, TemplateId: "minimal"}))
			ids[i], errs[i] = id, err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("create %d: %v\n%s", i, err, h.LogTail())
		}
	}
	list, err := h.API.ListSandboxes(ctxT(t, time.Minute), connect.NewRequest(&hav1.ListSandboxesRequest{}))
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(list.Msg.Sandboxes) != n {
		t.Fatalf("list: %d capsules, want %d", len(list.Msg.Sandboxes), n)
	}
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, code, err := h.tryExec(t, id, "echo $((20+1))"); err != nil || code != 0 || out != "21\n" {
				t.Errorf("exec in %s: %q %d %v", id, out, code, err)
			}
			if _, err := h.API.DestroySandbox(ctxT(t, time.Minute), connect.NewRequest(&hav1.DestroySandboxRequest{SandboxId: id})); err != nil {
				t.Errorf("destroy %s: %v", id, err)
			}
		}()
	}
	wg.Wait()
	// Destroy alone (not Terminate) leaves nothing behind.
	h.assertNoCapsules(t)
}

// FlattenRootfs turns a capsule's files into an image template that new
// capsules boot fresh from.
func TestFlattenTemplate(t *testing.T) {
	h := newHost(t)
	src := h.create(t, nil)
	h.exec(t, src.SandboxId, "mkdir -p /opt/app && echo built > /opt/app/artifact && rm /etc/hostname")
	if _, err := h.API.StartBackground(ctxT(t, time.Minute), connect.NewRequest(&hav1.StartBackgroundRequest{SandboxId: src.SandboxId, Tag: "sleeper", Cmd: "sleep", Args: []string{"1000"}})); err != nil {
		t.Fatal(err)
	}
	res, err := h.API.FlattenRootfs(ctxT(t, 2*time.Minute), connect.NewRequest(&hav1.CreateSnapshotRequest{SandboxId: src.SandboxId, TeamId: "team-test", TemplateId: "flat-1"}))
	if err != nil {
		t.Fatalf("FlattenRootfs: %v\n%s", err, h.LogTail())
	}
	if res.Msg.SizeBytes <= 0 {
		t.Fatalf("size %d", res.Msg.SizeBytes)
	}
	if _, ok := h.status(t, src.SandboxId); ok {
		t.Fatal("flattened capsule still listed")
	}
	c := h.create(t, func(r *hav1.CreateSandboxRequest) { r.TeamId = "team-test"; r.TemplateId = "flat-1" })
	if got := h.exec(t, c.SandboxId, "cat /opt/app/artifact; test -e /etc/hostname || echo gone"); got != "built\ngone\n" {
		t.Fatalf("capsule from flattened template sees %q", got)
	}
	// Booted fresh: no process of the source capsule runs.
	if got := h.exec(t, c.SandboxId, "ps | grep -c '[s]leep 1000' || true"); got != "0\n" {
		t.Fatalf("processes carried over: %q", got)
	}
}

// The base template: Debian bookworm with the tools agents expect, a
// default user with passwordless sudo.
func TestBaseTemplate(t *testing.T) {
	if os.Getenv("WRENN_TEST_DEBOOTSTRAP") != "1" {
		testutil.SkipUnlessCI(t, "set WRENN_TEST_DEBOOTSTRAP=1 to build the Debian base image (~1 min, downloads packages)")
	}
	h := newHost(t)
	c := h.create(t, func(r *hav1.CreateSandboxRequest) { r.TemplateId = "base"; r.DefaultUser = "user"; r.MemoryMb = 512 })
	out := h.exec(t, c.SandboxId, `id -un; python3 -c 'print(6*7)'; sudo -n id -u; git --version | cut -d' ' -f1; for c in curl bash ip ps; do command -v $c; done; test -f /etc/ssl/certs/ca-certificates.crt && echo certs; echo $HOME`)
	want := "user\n42\n0\ngit\n/usr/bin/curl\n/usr/bin/bash\n/usr/sbin/ip\n/usr/bin/ps\ncerts\n/home/user\n"
	if out != want {
		t.Fatalf("base template:\n%s\nwant:\n%s", out, want)
	}
}
