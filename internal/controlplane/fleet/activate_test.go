package fleet_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/controlplane/fleet"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

// A registered host takes no work until the control plane has reached its agent over mutual TLS; a
// create that arrives in between waits for it instead of failing.
func TestRegisteredHostGoesOnlineWhenReached(t *testing.T) {
	e := newEnv(t, func(c *fleet.Config) { c.PendingWait = 500 * time.Millisecond })
	ctx := context.Background()
	team := e.NewAccount(t, "t", false)

	// Registered, agent not serving yet (its port refuses connections).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h := e.createHost(t, e.admin.JWT, map[string]any{"type": "regular"})
	creds := e.register(t, h.RegistrationToken, addr)
	id := hostUUID(t, creds.Host.ID)
	want(t, e.Do(t, "POST", hostPath(creds.Host.ID, "heartbeat"), cptest.Cred{HostToken: creds.Token}, nil), 204, "")
	if st := e.hostStatus(t, creds.Host.ID); st != store.HostPending {
		t.Fatalf("host is %s before its agent serves", st)
	}
	_, err = e.svc.Agent(ctx, id)
	wantUnavailable(t, err)
	_, err = e.svc.Pick(ctx, team.Team, 256, 1024)
	wantCode(t, err, "no_capacity")

	// The agent starts serving while a create waits: the create gets the host.
	// (A second control plane over the same database, one that waits longer.)
	patient, err := fleet.New(ctx, fleet.Config{Store: e.Store, Signer: e.Signer, PendingWait: time.Minute, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(patient.Close)
	picked := make(chan error, 1)
	go func() {
		got, err := patient.Pick(ctx, team.Team, 256, 1024)
		if err == nil && got.ID != id {
			err = fmt.Errorf("picked host %v, want the new one", got.ID)
		}
		picked <- err
	}()
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	serveAgent(t, ln, creds)
	if err := <-picked; err != nil {
		t.Fatalf("pick while the agent starts: %v", err)
	}
	if st := e.hostStatus(t, creds.Host.ID); st != store.HostOnline {
		t.Fatalf("host is %s after its agent was reached", st)
	}
	if _, err := e.svc.Agent(ctx, id); err != nil {
		t.Fatalf("online host: %v", err)
	}
	if got := e.auditActions(t, creds.Host.ID); !slices.Equal(got, []string{"host.create", "host.up"}) {
		t.Fatalf("audit = %v", got)
	}
	// A heartbeat of an online host changes nothing.
	want(t, e.Do(t, "POST", hostPath(creds.Host.ID, "heartbeat"), cptest.Cred{HostToken: creds.Token}, nil), 204, "")
	if got := e.auditActions(t, creds.Host.ID); len(got) != 2 {
		t.Fatalf("audit = %v", got)
	}
}

// The first heartbeat of an agent that serves makes its host online.
func TestHeartbeatActivatesHost(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := e.createHost(t, e.admin.JWT, map[string]any{"type": "regular"})
	creds := e.register(t, h.RegistrationToken, ln.Addr().String())
	if st := e.hostStatus(t, creds.Host.ID); st != store.HostPending {
		t.Fatalf("host is %s after registration", st)
	}
	// A registered host gets no new registration token.
	want(t, e.Do(t, "POST", hostPath(creds.Host.ID, "token"), cptest.Bearer(e.admin.JWT), nil), 409, "invalid_state")
	serveAgent(t, ln, creds)
	want(t, e.Do(t, "POST", hostPath(creds.Host.ID, "heartbeat"), cptest.Cred{HostToken: creds.Token}, nil), 204, "")
	if st := e.hostStatus(t, creds.Host.ID); st != store.HostOnline {
		t.Fatalf("host is %s after the first heartbeat of a serving agent", st)
	}
}
