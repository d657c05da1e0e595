package store_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

var seq atomic.Int64

// unique returns a string unique within the test process.
func unique(prefix string) string { return fmt.Sprintf("%s%d", prefix, seq.Add(1)) }

func ptr[T any](v T) *T { return &v }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustRows(t *testing.T, got int64, err error, want int64) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("rows affected = %d, want %d", got, want)
	}
}

func wantNoRows(t *testing.T, err error) {
	t.Helper()
	if !store.IsNotFound(err) {
		t.Fatalf("error = %v, want no rows", err)
	}
}

func mustUser(t *testing.T, s *store.Store, status string) db.User {
	t.Helper()
	u, err := s.CreateUser(t.Context(), db.CreateUserParams{
		Email:        unique("user") + "@example.com",
		Name:         "Test User",
		PasswordHash: ptr("$2a$12$hash"),
		Status:       status,
	})
	must(t, err)
	return u
}

// mustTeam creates a team owned by owner.
func mustTeam(t *testing.T, s *store.Store, owner uuid.UUID) db.Team {
	t.Helper()
	team, err := s.CreateTeam(t.Context(), "Test's Team")
	must(t, err)
	_, err = s.AddTeamMember(t.Context(), db.AddTeamMemberParams{TeamID: team.ID, UserID: owner, Role: store.RoleOwner})
	must(t, err)
	return team
}

func mustHost(t *testing.T, s *store.Store, typ string, team *uuid.UUID) db.Host {
	t.Helper()
	h, err := s.CreateHost(t.Context(), db.CreateHostParams{Type: typ, TeamID: team})
	must(t, err)
	return h
}

// mustOnlineHost creates a registered (online) regular host.
func mustOnlineHost(t *testing.T, s *store.Store, memoryMB int32) db.Host {
	t.Helper()
	h := mustHost(t, s, store.HostRegular, nil)
	_, err := s.RegisterHost(t.Context(), db.RegisterHostParams{
		ID: h.ID, Address: "127.0.0.1:" + fmt.Sprint(40000+seq.Add(1)), Arch: ptr("amd64"),
		CPUCores: ptr(int32(8)), MemoryMB: ptr(memoryMB), DiskGB: ptr(int32(100)),
	})
	must(t, err)
	n, err := s.MarkHostOnline(t.Context(), h.ID)
	mustRows(t, n, err, 1)
	h, err = s.GetHost(t.Context(), h.ID)
	must(t, err)
	return h
}

func mustCapsule(t *testing.T, s *store.Store, team uuid.UUID, host *uuid.UUID) db.Capsule {
	t.Helper()
	c, err := s.CreateCapsule(t.Context(), db.CreateCapsuleParams{
		TeamID: team, TemplateID: ptr(store.BaseTemplateID), TemplateName: "base", HostID: host,
		VCPUs: 1, MemoryMB: 512, DiskMB: 5120, AllowInternet: true, DefaultUser: "root",
	})
	must(t, err)
	return c
}
