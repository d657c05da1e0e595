package capsules_test

import (
	"context"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/api/hostagent/hostagent/v1/hostagentv1connect"
	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// orderedScheduler picks the first of its hosts not avoided and records what it was asked to avoid.
type orderedScheduler struct {
	hosts []db.Host
	mu    sync.Mutex
	avoid [][]uuid.UUID
}

func (s *orderedScheduler) Pick(_ context.Context, _ uuid.UUID, _, _ int32, avoid ...uuid.UUID) (db.Host, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.avoid = append(s.avoid, slices.Clone(avoid))
	for _, h := range s.hosts {
		if !slices.Contains(avoid, h.ID) {
			return h, nil
		}
	}
	return db.Host{}, apierr.NoCapacity("no online host can fit the capsule")
}

// A host that is online in the database but whose agent refuses connections (restarting, or gone since
// its last heartbeat) does not fail the create: the call never reached it, so the capsule goes to
// another host.
func TestCreateMovesOnWhenAgentRefuses(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close()
	dead, err := f.env.Store.CreateHost(ctx, db.CreateHostParams{Type: store.HostRegular})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.env.Store.RegisterHost(ctx, db.RegisterHostParams{ID: dead.ID, Address: deadAddr}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.env.Store.MarkHostOnline(ctx, dead.ID); err != nil {
		t.Fatal(err)
	}
	if dead, err = f.env.Store.GetHost(ctx, dead.ID); err != nil {
		t.Fatal(err)
	}
	f.agents.mu.Lock()
	f.agents.clients[dead.ID] = hostagentv1connect.NewHostAgentServiceClient(http.DefaultClient, "http://"+deadAddr)
	f.agents.mu.Unlock()

	sched := &orderedScheduler{hosts: []db.Host{dead, f.host}}
	svc, err := capsules.New(capsules.Config{Store: f.env.Store, Agents: f.agents, Scheduler: sched})
	if err != nil {
		t.Fatal(err)
	}
	actor := auth.Identity{Method: auth.MethodJWT, UserID: f.alice.UserID, TeamID: f.alice.TeamID, Role: f.alice.Role}
	c, err := svc.Create(ctx, actor, f.alice.Team, capsules.CreateParams{Template: "minimal", VCPUs: 1, MemoryMB: 256})
	if err != nil {
		t.Fatalf("create with a refusing host first: %v", err)
	}
	if c.HostID == nil || *c.HostID != f.host.ID || c.Status != store.CapsuleRunning {
		t.Fatalf("capsule %+v, want running on %s", c, ids.Host.Format(f.host.ID))
	}
	if len(sched.avoid) != 2 || len(sched.avoid[0]) != 0 || !slices.Equal(sched.avoid[1], []uuid.UUID{dead.ID}) {
		t.Fatalf("scheduler asked to avoid %v", sched.avoid)
	}
	if got := f.status(t, ids.Capsule.Format(c.ID)); got != "running" {
		t.Fatalf("status %s", got)
	}
}
