package agent_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/testutil"
)

// minimalPool is a warm pool of the minimal image in the shape host.create asks for.
func minimalPool(size int32) *hav1.SetTemplatePoolRequest {
	return &hav1.SetTemplatePoolRequest{TemplateId: "minimal", Size: size, Vcpus: 1, MemoryMb: 256, DiskSizeMb: 2048}
}

// setPool sets a pool and returns how many members are ready.
func (h *host) setPool(t *testing.T, req *hav1.SetTemplatePoolRequest) int {
	t.Helper()
	res, err := h.API.SetTemplatePool(ctxT(t, time.Minute), connect.NewRequest(req))
	if err != nil {
		t.Fatalf("SetTemplatePool: %v", err)
	}
	return int(res.Msg.GetReady())
}

func (h *host) waitPoolReady(t *testing.T, req *hav1.SetTemplatePoolRequest) {
	t.Helper()
	eventually(t, 120*time.Second, "pool ready", func() error {
		if n := h.setPool(t, req); n < int(req.Size) {
			return fmt.Errorf("%d of %d ready", n, req.Size)
		}
		return nil
	})
}

// poolMembers lists the members the agent keeps (their directories).
func (h *host) poolMembers() []string {
	ents, _ := os.ReadDir(filepath.Join(h.DataDir, "pool"))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// runtimeID is the runtime name in the capsule's record: a wp-… name for a capsule from a pool.
func (h *host) runtimeID(t *testing.T, id string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.DataDir, "capsules", id, "capsule.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		RuntimeID string `json:"runtime_id"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r.RuntimeID
}

func (h *host) destroy(t *testing.T, id string) {
	t.Helper()
	if _, err := h.API.DestroySandbox(ctxT(t, time.Minute), connect.NewRequest(&hav1.DestroySandboxRequest{SandboxId: id})); err != nil {
		t.Fatalf("destroy %s: %v", id, err)
	}
}

func TestWarmPool(t *testing.T) {
	testutil.Integration(t)
	h := newHost(t)
	pool := minimalPool(2)
	h.setPool(t, pool)
	h.waitPoolReady(t, pool)
	if m := h.poolMembers(); len(m) != 2 {
		t.Fatalf("pool members %v", m)
	}

	// A pooled create answers with its own identity; what it leaves never reaches the next one.
	var prev string
	for round := range 3 {
		c := h.create(t, func(r *hav1.CreateSandboxRequest) { r.DefaultEnv = map[string]string{"ROUND": strconv.Itoa(round)} })
		id := c.GetSandboxId()
		if rid := h.runtimeID(t, id); !strings.HasPrefix(rid, "wp-") {
			t.Fatalf("round %d: capsule not from the pool (runtime id %q)", round, rid)
		}
		got := h.exec(t, id, `echo "$WRENN_SANDBOX_ID $ROUND $(cat /run/wrenn/sandbox_id)"; ls /tmp; ps | grep -c "[s]leep 4242" || true`)
		want := fmt.Sprintf("%s %d %s\n", id, round, id)
		if !strings.HasPrefix(got, want) || strings.Contains(got, "mark-") || !strings.HasSuffix(got, "0\n") {
			t.Fatalf("round %d: identity/leftovers %q, want prefix %q, no mark file, no sleep", round, got, want)
		}
		h.exec(t, id, "echo x > /tmp/mark-"+id)
		if _, err := h.API.StartBackground(ctxT(t, time.Minute), connect.NewRequest(&hav1.StartBackgroundRequest{
			SandboxId: id, Tag: "sleeper", Cmd: "/bin/sleep", Args: []string{"4242"}})); err != nil {
			t.Fatal(err)
		}
		if prev != "" {
			h.destroy(t, prev)
		}
		prev = id
		// Refilled after the hand-out.
		h.waitPoolReady(t, pool)
	}
	h.destroy(t, prev)

	// A create of another shape misses and goes the usual way.
	c := h.create(t, func(r *hav1.CreateSandboxRequest) { r.MemoryMb = 320 })
	if rid := h.runtimeID(t, c.GetSandboxId()); rid != "" {
		t.Fatalf("create of another shape took pool member %s", rid)
	}
	if got := h.exec(t, c.GetSandboxId(), `echo $WRENN_SANDBOX_ID`); strings.TrimSpace(got) != c.GetSandboxId() {
		t.Fatalf("fallback identity %q", got)
	}
	h.destroy(t, c.GetSandboxId())

	// Empty pool (size 0): members gone, creates as before.
	h.setPool(t, minimalPool(0))
	if m := h.poolMembers(); len(m) != 0 {
		t.Fatalf("members after size 0: %v", m)
	}
	c = h.create(t, nil)
	if rid := h.runtimeID(t, c.GetSandboxId()); rid != "" {
		t.Fatalf("runtime id %q without a pool", rid)
	}
	h.destroy(t, c.GetSandboxId())
	h.assertNoCapsules(t)
}

func TestWarmPoolDrainsOnTemplateDelete(t *testing.T) {
	testutil.Integration(t)
	h := newHost(t)
	src := h.create(t, nil).GetSandboxId()
	h.exec(t, src, "echo from-template > /tmp/tpl")
	if _, err := h.API.CreateSnapshot(ctxT(t, 2*time.Minute), connect.NewRequest(&hav1.CreateSnapshotRequest{
		SandboxId: src, TeamId: "team-pool", TemplateId: "tpl-pool"})); err != nil {
		t.Fatal(err)
	}
	h.destroy(t, src)
	pool := &hav1.SetTemplatePoolRequest{TeamId: "team-pool", TemplateId: "tpl-pool", Size: 1, Vcpus: 1, MemoryMb: 256, DiskSizeMb: 2048}
	h.setPool(t, pool)
	h.waitPoolReady(t, pool)

	c := h.create(t, func(r *hav1.CreateSandboxRequest) { r.TeamId, r.TemplateId = "team-pool", "tpl-pool" })
	id := c.GetSandboxId()
	if rid := h.runtimeID(t, id); !strings.HasPrefix(rid, "wp-") {
		t.Fatalf("template capsule not from the pool (runtime id %q)", rid)
	}
	if got := h.exec(t, id, `cat /tmp/tpl; echo $WRENN_SANDBOX_ID`); got != "from-template\n"+id+"\n" {
		t.Fatalf("restored pooled capsule: %q", got)
	}
	h.waitPoolReady(t, pool)
	if _, err := h.API.DeleteSnapshot(ctxT(t, time.Minute), connect.NewRequest(&hav1.DeleteSnapshotRequest{TeamId: "team-pool", TemplateId: "tpl-pool"})); err != nil {
		t.Fatal(err)
	}
	if m := h.poolMembers(); len(m) != 0 {
		t.Fatalf("pool not drained on template delete: %v", m)
	}
	h.destroy(t, id)
	h.assertNoCapsules(t)
}

// forkCounter appends "<n> <capsule id>" every 100 ms; the id is what envd published at the last /init.
const forkCounter = `i=0; while :; do i=$((i+1)); echo "$i $(cat /run/wrenn/sandbox_id)" >> /tmp/log; sleep 0.1; done`

// counterLog reads the capsule's /tmp/log as (value, capsule id) lines; none before the counter's first
// line (the file does not exist yet).
func (h *host) counterLog(t *testing.T, id string) [][2]string {
	t.Helper()
	var out [][2]string
	text := strings.TrimSpace(h.exec(t, id, "cat /tmp/log 2>/dev/null; true"))
	if text == "" {
		return nil
	}
	for _, l := range strings.Split(text, "\n") {
		n, who, _ := strings.Cut(l, " ")
		out = append(out, [2]string{n, who})
	}
	return out
}

func TestFork(t *testing.T) {
	testutil.Integration(t)
	h := newHost(t)
	src := h.create(t, nil).GetSandboxId()
	if _, err := h.API.StartBackground(ctxT(t, time.Minute), connect.NewRequest(&hav1.StartBackgroundRequest{
		SandboxId: src, Tag: "counter", Cmd: "/bin/sh", Args: []string{"-c", forkCounter}})); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "counter running", func() error {
		if n := len(h.counterLog(t, src)); n < 5 {
			return fmt.Errorf("%d lines", n)
		}
		return nil
	})
	before := len(h.counterLog(t, src))
	targets := []*hav1.ForkTarget{{SandboxId: newID()}, {SandboxId: newID()}, {SandboxId: newID()}}
	res, err := h.API.ForkSandbox(ctxT(t, 5*time.Minute), connect.NewRequest(&hav1.ForkSandboxRequest{SandboxId: src, Targets: targets}))
	if err != nil {
		t.Fatalf("ForkSandbox: %v\n%s", err, h.LogTail())
	}
	if len(res.Msg.GetSandboxes()) != len(targets) {
		t.Fatalf("fork answered %v", res.Msg)
	}
	ids := []string{src}
	for _, s := range res.Msg.GetSandboxes() {
		ids = append(ids, s.GetSandboxId())
	}
	// Every counter advances with its own capsule's id.
	for _, id := range ids {
		eventually(t, 60*time.Second, "counter of "+id+" advancing", func() error {
			l := h.counterLog(t, id)
			if len(l) == 0 {
				return fmt.Errorf("no counter log yet")
			}
			if last := l[len(l)-1]; last[1] != id {
				return fmt.Errorf("last line %v", last)
			}
			return nil
		})
	}
	// Each copy has the source's history (lines 1..p with the source's id: up to the checkpoint, and
	// until /init gave the copy its id) and goes on counting from it under its own id, without a gap.
	for _, id := range ids[1:] {
		if got := strings.TrimSpace(h.exec(t, id, "echo $WRENN_SANDBOX_ID")); got != id {
			t.Fatalf("copy's WRENN_SANDBOX_ID %q, want %s", got, id)
		}
		l := h.counterLog(t, id)
		p := 0
		for p < len(l) && l[p][1] == src {
			p++
		}
		for i, line := range l {
			if line[0] != strconv.Itoa(i+1) {
				t.Fatalf("copy %s: line %d is %v: the counter did not continue", id, i+1, line)
			}
			if i >= p && line[1] != id {
				t.Fatalf("copy %s: line %d is %v after its own id appeared at %d", id, i+1, line, p+1)
			}
		}
		if p < before || p == len(l) {
			t.Fatalf("copy %s: source history up to %d (source had %d before the fork), %d lines", id, p, before, len(l))
		}
	}
	// Independent: a file written in one copy is in no other capsule.
	h.exec(t, ids[1], "echo only > /tmp/only")
	for _, id := range []string{src, ids[2], ids[3]} {
		if out, code, _ := h.tryExec(t, id, "cat /tmp/only"); code == 0 {
			t.Fatalf("%s sees another copy's file: %q", id, out)
		}
	}
	for _, id := range ids {
		h.destroy(t, id)
	}
	h.assertNoCapsules(t)
}
