package fleet_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/fleet"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

// run runs the service's loops until the test ends.
func (e *env) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// wantUnavailable checks err is 503 host_unavailable "sandbox host is not reachable".
func wantUnavailable(t *testing.T, err error) {
	t.Helper()
	var ae *apierr.Error
	if !errors.As(err, &ae) || ae.Status != 503 || ae.Code != "host_unavailable" || ae.Message != "sandbox host is not reachable" {
		t.Fatalf("err = %v, want 503 host_unavailable", err)
	}
}

func TestMonitor(t *testing.T) {
	e := newEnv(t, func(c *fleet.Config) {
		c.HeartbeatTimeout = 400 * time.Millisecond
		c.MonitorInterval = 50 * time.Millisecond
	})
	team := e.NewAccount(t, "t", false)
	silent := e.onlineHost(t, "127.0.0.1:7000")
	alive := e.onlineHost(t, "127.0.0.2:7000")
	sid := hostUUID(t, silent.Host.ID)
	running := e.addCapsule(t, team.Team, sid, store.CapsuleRunning, 256)
	pending := e.addCapsule(t, team.Team, sid, store.CapsulePending, 256)
	paused := e.addCapsule(t, team.Team, sid, store.CapsulePaused, 256)
	other := e.addCapsule(t, team.Team, hostUUID(t, alive.Host.ID), store.CapsuleRunning, 256)
	ctx := context.Background()
	if _, err := e.svc.Agent(ctx, sid); err != nil {
		t.Fatalf("online host: %v", err)
	}
	e.run(t)

	eventually(t, 60*time.Second, "silent host unreachable", func() bool {
		want(t, e.Do(t, "POST", hostPath(alive.Host.ID, "heartbeat"), cptest.Cred{HostToken: alive.Token}, nil), 204, "")
		return e.hostStatus(t, silent.Host.ID) == store.HostUnreachable
	})
	if st := e.hostStatus(t, alive.Host.ID); st != store.HostOnline {
		t.Fatalf("heartbeating host is %s", st)
	}
	for id, st := range map[uuid.UUID]string{running: "missing", pending: "missing", paused: "paused", other: "running"} {
		if got := e.capsuleStatus(t, id); got != st {
			t.Fatalf("capsule %s is %s, want %s", ids.Capsule.Format(id), got, st)
		}
	}
	if got := e.auditActions(t, silent.Host.ID); !slices.Equal(got, []string{"host.create", "host.down"}) {
		t.Fatalf("audit = %v", got)
	}
	_, err := e.svc.Agent(ctx, sid)
	wantUnavailable(t, err)
	_, _, err = e.svc.Transport(ctx, sid)
	wantUnavailable(t, err)

	// It comes back with a heartbeat; its capsules stay missing (the capsule reconciler's job).
	want(t, e.Do(t, "POST", hostPath(silent.Host.ID, "heartbeat"), cptest.Cred{HostToken: silent.Token}, nil), 204, "")
	if st := e.hostStatus(t, silent.Host.ID); st != store.HostOnline {
		t.Fatalf("host is %s after heartbeat", st)
	}
	if got := e.capsuleStatus(t, running); got != "missing" {
		t.Fatalf("capsule is %s", got)
	}
	if got := e.auditActions(t, silent.Host.ID); !slices.Equal(got, []string{"host.create", "host.down", "host.up"}) {
		t.Fatalf("audit = %v", got)
	}
	if _, err := e.svc.Agent(ctx, sid); err != nil {
		t.Fatalf("host back online: %v", err)
	}
}

func TestAgentUnavailable(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pending := e.createHost(t, e.admin.JWT, map[string]any{"type": "regular"}).Host
	_, err := e.svc.Agent(ctx, hostUUID(t, pending.ID))
	wantUnavailable(t, err)
	_, err = e.svc.Agent(ctx, uuid.New())
	wantUnavailable(t, err)
}

func TestClientCertRenewal(t *testing.T) {
	var offset atomic.Int64
	e := newEnv(t, func(c *fleet.Config) {
		c.MonitorInterval = 20 * time.Millisecond
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	cert := e.svc.ClientCertificate()
	first := cert.Leaf()
	if first.Subject.CommonName != "wrenn-cp" {
		t.Fatalf("client certificate CN %q", first.Subject.CommonName)
	}
	if d := time.Until(first.NotAfter); d < 23*time.Hour || d > 24*time.Hour {
		t.Fatalf("client certificate expires in %v", d)
	}
	e.run(t)
	offset.Store(int64(11 * time.Hour))
	time.Sleep(200 * time.Millisecond)
	if cert.Leaf().SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatal("renewed before 12 h")
	}
	offset.Store(int64(12*time.Hour + time.Minute))
	eventually(t, 60*time.Second, "renewal", func() bool { return cert.Leaf().SerialNumber.Cmp(first.SerialNumber) != 0 })
	second := cert.Leaf()
	time.Sleep(200 * time.Millisecond)
	if cert.Leaf().SerialNumber.Cmp(second.SerialNumber) != 0 {
		t.Fatal("renewed again within 12 h")
	}
}

func TestSharedCA(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// The environment's service created the CA; others load it.
	other, err := fleet.New(ctx, fleet.Config{Store: e.Store, Signer: e.Signer})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if string(other.CACertPEM()) != string(e.svc.CACertPEM()) {
		t.Fatal("second control plane made its own CA")
	}

	// Control planes starting together on an empty database agree on one CA.
	fresh := cptest.New(t)
	const n = 4
	pems := make(chan string, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			s, err := fleet.New(ctx, fleet.Config{Store: fresh.Store, Signer: fresh.Signer})
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			pems <- string(s.CACertPEM())
		}()
	}
	var first string
	for i := range n {
		select {
		case err := <-errs:
			t.Fatal(err)
		case p := <-pems:
			if i == 0 {
				first = p
			} else if p != first {
				t.Fatal("concurrent control planes made different CAs")
			}
		}
	}
	row, err := fresh.Store.GetInternalCA(ctx)
	if err != nil || row.CertPEM != first {
		t.Fatalf("stored CA differs: %v", err)
	}
}
