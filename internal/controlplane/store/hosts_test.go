package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

func TestHosts(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	admin := mustUser(t, s, store.UserActive)
	team := mustTeam(t, s, admin.ID)

	h, err := s.CreateHost(ctx, db.CreateHostParams{Type: store.HostRegular, Provider: ptr("hetzner"), Tags: []string{"gpu"}, CreatedBy: &admin.ID})
	must(t, err)
	if h.Status != store.HostPending || h.Address != nil || !slices.Equal(h.Tags, []string{"gpu"}) {
		t.Fatalf("host = %+v", h)
	}
	byoc := mustHost(t, s, store.HostBYOC, &team.ID)
	if byoc.Tags == nil {
		t.Fatal("nil tags not stored as empty")
	}

	reg, err := s.RegisterHost(ctx, db.RegisterHostParams{ID: h.ID, Address: "127.0.0.1:5000", Arch: ptr("amd64"), CPUCores: ptr(int32(4)), MemoryMB: ptr(int32(8192)), DiskGB: ptr(int32(50))})
	must(t, err)
	if reg.Status != store.HostPending || *reg.Address != "127.0.0.1:5000" || *reg.CPUCores != 4 {
		t.Fatalf("registered = %+v", reg) // takes no work until the control plane reached its agent
	}
	pending, err := s.ListRegisteredPendingHosts(ctx, db.ListRegisteredPendingHostsParams{Type: store.HostRegular})
	must(t, err)
	if len(pending) != 1 || pending[0].ID != h.ID {
		t.Fatalf("registered pending hosts = %+v", pending)
	}
	n, err := s.MarkHostOnline(ctx, h.ID)
	mustRows(t, n, err, 1)
	n, err = s.MarkHostOnline(ctx, byoc.ID) // not registered
	mustRows(t, n, err, 0)
	reg, err = s.GetHost(ctx, h.ID)
	must(t, err)
	if reg.Status != store.HostOnline || reg.LastHeartbeatAt == nil {
		t.Fatalf("online = %+v", reg)
	}
	_, err = s.RegisterHost(ctx, db.RegisterHostParams{ID: h.ID, Address: "127.0.0.1:5001"})
	wantNoRows(t, err) // only from pending

	got, err := s.GetHost(ctx, h.ID)
	must(t, err)
	if got.ID != h.ID {
		t.Fatal("get host")
	}
	all, err := s.ListHosts(ctx)
	must(t, err)
	mine, err := s.ListHostsByTeam(ctx, team.ID)
	must(t, err)
	if len(all) != 2 || len(mine) != 1 || mine[0].ID != byoc.ID {
		t.Fatalf("hosts = %d, team hosts = %+v", len(all), mine)
	}

	// Heartbeats; a silent host becomes unreachable and comes back.
	hb, err := s.HostHeartbeat(ctx, h.ID)
	must(t, err)
	if hb.PreviousStatus != store.HostOnline || hb.Status != store.HostOnline {
		t.Fatalf("heartbeat = %+v", hb)
	}
	silent, err := s.MarkSilentHostsUnreachable(ctx, time.Now().Add(-90*time.Second))
	must(t, err)
	if len(silent) != 0 {
		t.Fatalf("fresh host marked unreachable: %v", silent)
	}
	silent, err = s.MarkSilentHostsUnreachable(ctx, time.Now().Add(time.Second))
	must(t, err)
	if !slices.Equal(silent, []uuid.UUID{h.ID}) {
		t.Fatalf("unreachable = %v", silent)
	}
	hb, err = s.HostHeartbeat(ctx, h.ID)
	must(t, err)
	if hb.PreviousStatus != store.HostUnreachable || hb.Status != store.HostOnline {
		t.Fatalf("heartbeat after silence = %+v", hb)
	}
	_, err = s.HostHeartbeat(ctx, uuid.New())
	wantNoRows(t, err)

	n, err = s.SetHostStatus(ctx, db.SetHostStatusParams{ID: h.ID, Status: store.HostDraining})
	mustRows(t, n, err, 1)
	_, err = s.SetHostStatus(ctx, db.SetHostStatusParams{ID: h.ID, Status: "broken"})
	if !store.IsCheckViolation(err, "") {
		t.Fatalf("bad status: %v", err)
	}

	n, err = s.AddHostTag(ctx, db.AddHostTagParams{ID: h.ID, Tag: "ssd"})
	mustRows(t, n, err, 1)
	n, err = s.AddHostTag(ctx, db.AddHostTagParams{ID: h.ID, Tag: "ssd"})
	mustRows(t, n, err, 0)
	n, err = s.RemoveHostTag(ctx, db.RemoveHostTagParams{ID: h.ID, Tag: "gpu"})
	mustRows(t, n, err, 1)
	n, err = s.RemoveHostTag(ctx, db.RemoveHostTagParams{ID: h.ID, Tag: "gpu"})
	mustRows(t, n, err, 0)
	got, err = s.GetHost(ctx, h.ID)
	must(t, err)
	if !slices.Equal(got.Tags, []string{"ssd"}) {
		t.Fatalf("tags = %v", got.Tags)
	}

	// Deleting a host drops its tokens and detaches its capsules.
	c := mustCapsule(t, s, team.ID, &h.ID)
	_, err = s.CreateHostRegistrationToken(ctx, db.CreateHostRegistrationTokenParams{HostID: h.ID, TokenHash: store.HashToken(unique("t")), TTLSeconds: 3600})
	must(t, err)
	_, err = s.CreateHostRefreshToken(ctx, db.CreateHostRefreshTokenParams{HostID: h.ID, TokenHash: store.HashToken(unique("r")), TTLSeconds: 3600})
	must(t, err)
	n, err = s.DeleteHost(ctx, h.ID)
	mustRows(t, n, err, 1)
	c, err = s.GetCapsuleByID(ctx, c.ID)
	must(t, err)
	if c.HostID != nil {
		t.Fatal("capsule still on deleted host")
	}
	var tokens int
	must(t, s.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM host_registration_tokens) + (SELECT count(*) FROM host_refresh_tokens)`).Scan(&tokens))
	if tokens != 0 {
		t.Fatalf("%d tokens left after host deletion", tokens)
	}
}

func TestListSchedulableHosts(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	team := mustTeam(t, s, mustUser(t, s, store.UserActive).ID)
	busy := mustOnlineHost(t, s, 8192)
	idle := mustOnlineHost(t, s, 4096)
	mustHost(t, s, store.HostRegular, nil) // pending: never scheduled
	byoc := mustHost(t, s, store.HostBYOC, &team.ID)
	_, err := s.RegisterHost(ctx, db.RegisterHostParams{ID: byoc.ID, Address: "127.0.0.1:7000"})
	must(t, err)
	registered := mustHost(t, s, store.HostRegular, nil) // registered, agent not reached: never scheduled
	_, err = s.RegisterHost(ctx, db.RegisterHostParams{ID: registered.ID, Address: "127.0.0.1:7001"})
	must(t, err)
	rows, err := s.ListSchedulableHosts(ctx, db.ListSchedulableHostsParams{Type: store.HostBYOC, TeamID: &team.ID})
	must(t, err)
	if len(rows) != 0 {
		t.Fatalf("registered byoc host schedulable before it is online: %+v", rows)
	}
	n, err := s.MarkHostOnline(ctx, byoc.ID)
	mustRows(t, n, err, 1)

	running := mustCapsule(t, s, team.ID, &busy.ID)
	_, err = s.UpdateCapsuleStatus(ctx, db.UpdateCapsuleStatusParams{ID: running.ID, Status: store.CapsuleRunning, FromStatuses: []string{store.CapsulePending}})
	must(t, err)
	paused := mustCapsule(t, s, team.ID, &busy.ID)
	_, err = s.UpdateCapsuleStatus(ctx, db.UpdateCapsuleStatusParams{ID: paused.ID, Status: store.CapsulePaused, FromStatuses: []string{store.CapsulePending}})
	must(t, err)
	gone := mustCapsule(t, s, team.ID, &busy.ID)
	_, err = s.UpdateCapsuleStatus(ctx, db.UpdateCapsuleStatusParams{ID: gone.ID, Status: store.CapsuleStopped, FromStatuses: []string{store.CapsulePending}})
	must(t, err)

	rows, err = s.ListSchedulableHosts(ctx, db.ListSchedulableHostsParams{Type: store.HostRegular})
	must(t, err)
	load := map[uuid.UUID]db.ListSchedulableHostsRow{}
	for _, r := range rows {
		load[r.Host.ID] = r
	}
	if len(rows) != 2 {
		t.Fatalf("schedulable = %+v", rows)
	}
	b := load[busy.ID]
	if b.VCPUsReserved != 1 || b.MemoryMBReserved != 512 || b.DiskMBReserved != 2*5120 {
		t.Fatalf("busy host load = %+v", b)
	}
	if i := load[idle.ID]; i.VCPUsReserved != 0 || i.MemoryMBReserved != 0 || i.DiskMBReserved != 0 || *i.Host.MemoryMB != 4096 {
		t.Fatalf("idle host load = %+v", i)
	}
	rows, err = s.ListSchedulableHosts(ctx, db.ListSchedulableHostsParams{Type: store.HostBYOC, TeamID: &team.ID})
	must(t, err)
	if len(rows) != 1 || rows[0].Host.ID != byoc.ID {
		t.Fatalf("byoc schedulable = %+v", rows)
	}
}

func TestHostRegistrationTokens(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	h := mustHost(t, s, store.HostRegular, nil)
	hash := store.HashToken("registration")
	tok, err := s.CreateHostRegistrationToken(ctx, db.CreateHostRegistrationTokenParams{HostID: h.ID, TokenHash: hash, TTLSeconds: 3600})
	must(t, err)
	if tok.ExpiresAt.Sub(tok.CreatedAt) != time.Hour {
		t.Fatalf("token = %+v", tok)
	}
	used, err := s.ConsumeHostRegistrationToken(ctx, hash)
	must(t, err)
	if used.HostID != h.ID || used.UsedAt == nil {
		t.Fatalf("consumed = %+v", used)
	}
	_, err = s.ConsumeHostRegistrationToken(ctx, hash)
	wantNoRows(t, err)

	expired := store.HashToken("expired")
	_, err = s.CreateHostRegistrationToken(ctx, db.CreateHostRegistrationTokenParams{HostID: h.ID, TokenHash: expired, TTLSeconds: 3600})
	must(t, err)
	_, err = s.Pool().Exec(ctx, `UPDATE host_registration_tokens SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 hour' WHERE token_hash = $1`, expired)
	must(t, err)
	_, err = s.ConsumeHostRegistrationToken(ctx, expired)
	wantNoRows(t, err)

	n, err := s.DeleteUnusedHostRegistrationTokens(ctx, h.ID)
	mustRows(t, n, err, 1)
	_, err = s.CreateHostRegistrationToken(ctx, db.CreateHostRegistrationTokenParams{HostID: uuid.New(), TokenHash: store.HashToken("x"), TTLSeconds: 3600})
	if !store.IsForeignKeyViolation(err, "") {
		t.Fatalf("token of missing host: %v", err)
	}
}

func TestHostRefreshTokenRotation(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	h := mustHost(t, s, store.HostRegular, nil)
	const ttl = 60 * 24 * 3600
	first := store.HashToken("first")
	_, err := s.CreateHostRefreshToken(ctx, db.CreateHostRefreshTokenParams{HostID: h.ID, TokenHash: first, TTLSeconds: ttl})
	must(t, err)

	second := store.HashToken("second")
	next, err := s.RotateHostRefreshToken(ctx, db.RotateHostRefreshTokenParams{OldTokenHash: first, NewTokenHash: second, TTLSeconds: ttl})
	must(t, err)
	if next.HostID != h.ID || next.TokenHash != second || next.ExpiresAt.Sub(next.CreatedAt) != 60*24*time.Hour {
		t.Fatalf("rotated = %+v", next)
	}
	// The old token is revoked: using it again fails and issues nothing.
	_, err = s.RotateHostRefreshToken(ctx, db.RotateHostRefreshTokenParams{OldTokenHash: first, NewTokenHash: store.HashToken("third"), TTLSeconds: ttl})
	wantNoRows(t, err)

	// Two agents racing with one token: exactly one rotation succeeds.
	for round := range 20 {
		cur := store.HashToken(unique("cur"))
		_, err := s.CreateHostRefreshToken(ctx, db.CreateHostRefreshTokenParams{HostID: h.ID, TokenHash: cur, TTLSeconds: ttl})
		must(t, err)
		start := make(chan struct{})
		results := make(chan error, 2)
		for range 2 {
			go func() {
				<-start
				_, err := s.RotateHostRefreshToken(context.Background(), db.RotateHostRefreshTokenParams{OldTokenHash: cur, NewTokenHash: store.HashToken(unique("new")), TTLSeconds: ttl})
				results <- err
			}()
		}
		close(start)
		wins := 0
		for range 2 {
			err := <-results
			if err == nil {
				wins++
			} else if !store.IsNotFound(err) {
				t.Fatal(err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d rotations succeeded", round, wins)
		}
	}

	n, err := s.RevokeHostRefreshTokens(ctx, h.ID)
	mustRows(t, n, err, 21) // second + one successor per round
	_, err = s.RotateHostRefreshToken(ctx, db.RotateHostRefreshTokenParams{OldTokenHash: second, NewTokenHash: store.HashToken("x"), TTLSeconds: ttl})
	wantNoRows(t, err)
}

func TestInternalCA(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	_, err := s.GetInternalCA(ctx)
	wantNoRows(t, err)
	const cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	n, err := s.InsertInternalCA(ctx, db.InsertInternalCAParams{CertPEM: cert, KeyPEM: "key-1"})
	mustRows(t, n, err, 1)
	n, err = s.InsertInternalCA(ctx, db.InsertInternalCAParams{CertPEM: cert, KeyPEM: "key-2"})
	mustRows(t, n, err, 0)
	ca, err := s.GetInternalCA(ctx)
	must(t, err)
	if ca.KeyPEM != "key-1" {
		t.Fatalf("ca = %+v", ca)
	}
	_, err = s.Pool().Exec(ctx, `DELETE FROM internal_ca`)
	must(t, err)
	_, err = s.InsertInternalCA(ctx, db.InsertInternalCAParams{CertPEM: "not a certificate", KeyPEM: "k"})
	if !store.IsCheckViolation(err, "") {
		t.Fatalf("bad certificate: %v", err)
	}
}
