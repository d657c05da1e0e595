package capsules_test

import (
	"context"
	"net/http"
	"testing"

	"connectrpc.com/connect"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

// TestReconcileHostResume: a capsule the database records paused that its agent resumed by itself (an
// agent restarted with -on-shutdown=pause resumes what it paused) becomes running again, with the
// address the agent reports and a system audit entry.
func TestReconcileHostResume(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	key := cptest.Key(f.alice.APIKey)
	c := f.create(t, key, map[string]any{"template": "minimal"})
	f.do(t, http.StatusOK, http.MethodPost, "/v1/capsules/"+c.ID+"/pause", key, nil)
	if st := f.status(t, c.ID); st != store.CapsulePaused {
		t.Fatalf("paused capsule is %s", st)
	}

	// Nothing to do while the host agrees.
	f.reconcile(t)
	if st := f.status(t, c.ID); st != store.CapsulePaused {
		t.Fatalf("paused capsule after reconcile is %s", st)
	}

	res, err := f.agent.API.ResumeSandbox(ctx, connect.NewRequest(&hav1.ResumeSandboxRequest{SandboxId: c.ID}))
	if err != nil {
		t.Fatal(err)
	}
	f.reconcile(t)
	got := f.get(t, key, c.ID)
	if got.Status != store.CapsuleRunning {
		t.Fatalf("capsule resumed by its host is %s", got.Status)
	}
	if got.HostIP == "" || got.HostIP != res.Msg.GetHostIp() {
		t.Errorf("host_ip = %q, agent reports %q", got.HostIP, res.Msg.GetHostIp())
	}
	if n := f.audits(t, "capsule.resume", c.ID, "system"); n != 1 {
		t.Errorf("system capsule.resume entries: %d", n)
	}
	if out := f.exec(t, c.ID, "echo alive"); out != "alive" {
		t.Errorf("exec after host resume: %q", out)
	}
	// The capsule works through the control plane again: pause and resume by the API.
	f.do(t, http.StatusOK, http.MethodPost, "/v1/capsules/"+c.ID+"/pause", key, nil)
	f.do(t, http.StatusOK, http.MethodPost, "/v1/capsules/"+c.ID+"/resume", key, nil)
	f.reconcile(t)
	if st := f.status(t, c.ID); st != store.CapsuleRunning {
		t.Fatalf("capsule resumed by the API is %s", st)
	}
	if n := f.audits(t, "capsule.resume", c.ID, "system"); n != 1 {
		t.Errorf("system capsule.resume entries after an API resume: %d", n)
	}
}
