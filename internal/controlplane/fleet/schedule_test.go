package fleet_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

// specHost registers a host created by jwt with the given specs.
func (e *env) specHost(t *testing.T, jwt string, body map[string]any, address string, memoryMB, cpus int) uuid.UUID {
	t.Helper()
	tok := e.createHost(t, jwt, body).RegistrationToken
	res := e.Do(t, "POST", "/v1/hosts/register", cptest.Cred{}, map[string]any{
		"token": tok, "address": address, "memory_mb": memoryMB, "cpu_cores": cpus, "disk_gb": 100,
	})
	want(t, res, 201, "")
	var out struct{ Host struct{ ID string } }
	res.JSON(t, &out)
	e.markOnline(t, out.Host.ID)
	return hostUUID(t, out.Host.ID)
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var ae *apierr.Error
	if !errors.As(err, &ae) || ae.Code != code {
		t.Fatalf("err = %v, want %s", err, code)
	}
}

func TestPick(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	team := e.NewAccount(t, "plain", false)
	b := e.byocTeam(t, "byoc")
	emptyBYOC := e.byocTeam(t, "empty")
	regular := map[string]any{"type": "regular"}

	x := e.specHost(t, e.admin.JWT, regular, "127.0.0.1:7000", 8192, 4)
	y := e.specHost(t, e.admin.JWT, regular, "127.0.0.2:7000", 8192, 4)
	// Not schedulable: pending, unreachable, or another team's BYOC host.
	e.createHost(t, e.admin.JWT, regular)
	down := e.specHost(t, e.admin.JWT, regular, "127.0.0.3:7000", 65536, 64)
	if _, err := e.Store.SetHostStatus(ctx, db.SetHostStatusParams{ID: down, Status: store.HostUnreachable}); err != nil {
		t.Fatal(err)
	}
	byocHost := e.specHost(t, b.owner.JWT, map[string]any{"type": "byoc"}, "127.0.0.4:7000", 16384, 8)

	pick := func(team uuid.UUID, mem, disk int32) uuid.UUID {
		t.Helper()
		h, err := e.svc.Pick(ctx, team, mem, disk)
		if err != nil {
			t.Fatalf("Pick(%d MB): %v", mem, err)
		}
		return h.ID
	}
	first := pick(team.Team, 1024, 1024)
	if first != x && first != y {
		t.Fatalf("picked %s", ids.Host.Format(first))
	}
	second := x
	if first == x {
		second = y
	}
	// Load spreads: the emptier host wins.
	e.addCapsule(t, team.Team, first, store.CapsuleRunning, 2048)
	if got := pick(team.Team, 1024, 1024); got != second {
		t.Fatal("did not pick the emptier host")
	}
	e.addCapsule(t, team.Team, second, store.CapsuleRunning, 4096)
	if got := pick(team.Team, 1024, 1024); got != first {
		t.Fatal("did not pick the emptier host")
	}
	// Paused capsules keep disk, not memory.
	e.addCapsule(t, team.Team, first, store.CapsulePaused, 4096)
	if got := pick(team.Team, 1024, 1024); got != first {
		t.Fatal("paused capsule counted as memory")
	}
	// CPU headroom counts too: the host with less free memory but more free CPU wins.
	e.addCapsule(t, team.Team, first, store.CapsuleRunning, 4096)       // first: 6144 MB, 2 vCPUs
	e.addCapsule(t, team.Team, second, store.CapsuleRunning, 2048)      // second: 6144 MB, 2 vCPUs
	e.addCapsuleCPU(t, team.Team, first, store.CapsuleRunning, 128, 3)  // first: 6272 MB, 5 vCPUs
	e.addCapsuleCPU(t, team.Team, second, store.CapsuleRunning, 256, 1) // second: 6400 MB, 3 vCPUs
	if got := pick(team.Team, 512, 1024); got != second {
		t.Fatal("CPU headroom ignored")
	}
	// Platform team schedules on regular hosts.
	if got := pick(store.PlatformTeamID, 512, 1024); got != x && got != y {
		t.Fatal("platform team not on a regular host")
	}

	// Nothing fits: memory (the big unreachable host and the BYOC host do not count), disk.
	_, err := e.svc.Pick(ctx, team.Team, 4096, 1024)
	wantCode(t, err, "no_capacity")
	_, err = e.svc.Pick(ctx, team.Team, 512, 200*1024)
	wantCode(t, err, "no_capacity")

	// BYOC teams use their own hosts only.
	if got := pick(b.owner.Team, 12000, 1024); got != byocHost {
		t.Fatal("BYOC team not on its host")
	}
	_, err = e.svc.Pick(ctx, b.owner.Team, 20000, 1024)
	wantCode(t, err, "no_capacity")
	_, err = e.svc.Pick(ctx, emptyBYOC.owner.Team, 128, 128)
	wantCode(t, err, "no_capacity")
	_, err = e.svc.Pick(ctx, uuid.New(), 128, 128)
	wantCode(t, err, "not_found")

	// A host that reported no specs fits anything, after hosts with room.
	bare := e.createHost(t, e.admin.JWT, regular).RegistrationToken
	res := e.Do(t, "POST", "/v1/hosts/register", cptest.Cred{}, map[string]any{"token": bare, "address": "127.0.0.9:7000"})
	want(t, res, 201, "")
	var bareHost struct{ Host struct{ ID string } }
	res.JSON(t, &bareHost)
	e.markOnline(t, bareHost.Host.ID)
	if got := pick(team.Team, 512, 1024); got != second {
		t.Fatal("host without specs preferred")
	}
	if _, err := e.svc.Pick(ctx, team.Team, 100000, 1024); err != nil {
		t.Fatalf("host without specs: %v", err)
	}
}

// PickHost checks one host as Pick checks every host: online and with memory and disk left.
func TestPickHost(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	team := e.NewAccount(t, "plain", false)
	regular := map[string]any{"type": "regular"}
	x := e.specHost(t, e.admin.JWT, regular, "127.0.0.1:7000", 4096, 4)
	down := e.specHost(t, e.admin.JWT, regular, "127.0.0.3:7000", 65536, 64)
	if _, err := e.Store.SetHostStatus(ctx, db.SetHostStatusParams{ID: down, Status: store.HostUnreachable}); err != nil {
		t.Fatal(err)
	}

	h, err := e.svc.PickHost(ctx, x, team.Team, 1024, 1024)
	if err != nil || h.ID != x {
		t.Fatalf("PickHost = %v, %v", h.ID, err)
	}
	e.addCapsule(t, team.Team, x, store.CapsuleRunning, 3584)
	_, err = e.svc.PickHost(ctx, x, team.Team, 1024, 1024)
	wantCode(t, err, apierr.CodeNoCapacity)
	if _, err := e.svc.PickHost(ctx, x, team.Team, 512, 1024); err != nil {
		t.Fatalf("PickHost(512 MB) on a host with 512 MB left: %v", err)
	}
	// Disk: 100 GB, of which the capsule reserves its disk.
	_, err = e.svc.PickHost(ctx, x, team.Team, 128, 100*1024)
	wantCode(t, err, apierr.CodeNoCapacity)
	_, err = e.svc.PickHost(ctx, down, team.Team, 128, 128)
	wantCode(t, err, apierr.CodeNoCapacity)
	_, err = e.svc.PickHost(ctx, uuid.New(), team.Team, 128, 128)
	wantCode(t, err, apierr.CodeNoCapacity)
}
