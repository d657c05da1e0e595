package fleet_test

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/fleet"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// byocTeam makes a new account whose team has BYOC enabled, plus a member and an admin of that team.
type byocTeam struct {
	owner, member, teamAdmin cptest.Account
	memberJWT, teamAdminJWT  string
}

func (e *env) byocTeam(t *testing.T, name string) byocTeam {
	t.Helper()
	b := byocTeam{owner: e.NewAccount(t, name, false)}
	if _, err := e.Store.SetTeamBYOC(context.Background(), db.SetTeamBYOCParams{ID: b.owner.Team, IsBYOC: true}); err != nil {
		t.Fatal(err)
	}
	b.member = e.NewAccount(t, name+"-member", false)
	e.AddMember(t, b.owner.Team, b.member.User, auth.RoleMember)
	b.memberJWT = e.JWT(t, b.member.User, b.owner.Team, auth.RoleMember)
	b.teamAdmin = e.NewAccount(t, name+"-admin", false)
	e.AddMember(t, b.owner.Team, b.teamAdmin.User, auth.RoleAdmin)
	b.teamAdminJWT = e.JWT(t, b.teamAdmin.User, b.owner.Team, auth.RoleAdmin)
	return b
}

func TestCreateHost(t *testing.T) {
	e := newEnv(t)
	plain := e.NewAccount(t, "plain", false)
	b := e.byocTeam(t, "byoc")

	// A regular host by the platform admin.
	res := e.Do(t, "POST", "/v1/hosts", cptest.Bearer(e.admin.JWT), map[string]any{
		"type": "regular", "provider": "hetzner", "availability_zone": "fsn1", "tags": []string{"gpu", "fast", "gpu"},
	})
	want(t, res, 201, "")
	var created fleet.HostWithToken
	res.JSON(t, &created)
	h := created.Host
	if !strings.HasPrefix(h.ID, "host-") || h.Type != "regular" || h.Status != "pending" || h.TeamID != "" ||
		h.Provider != "hetzner" || h.AvailabilityZone != "fsn1" || !slices.Equal(h.Tags, []string{"gpu", "fast"}) ||
		h.CreatedBy != e.admin.UserID || h.Address != "" || h.LastHeartbeatAt != nil || h.CreatedAt.IsZero() {
		t.Fatalf("host = %+v", h)
	}
	if !hex64.MatchString(created.RegistrationToken) {
		t.Fatalf("registration token %q", created.RegistrationToken)
	}
	if got := e.auditActions(t, h.ID); !slices.Equal(got, []string{"host.create"}) {
		t.Fatalf("audit = %v", got)
	}
	// Raw JSON: optional fields are omitted, tags always present.
	var raw map[string]any
	e.Do(t, "GET", hostPath(h.ID), cptest.Bearer(e.admin.JWT), nil).JSON(t, &raw)
	for _, k := range []string{"address", "team_id", "last_heartbeat_at", "cpu_cores"} {
		if _, ok := raw[k]; ok {
			t.Fatalf("%s present in %v", k, raw)
		}
	}
	if _, ok := raw["tags"]; !ok {
		t.Fatalf("tags missing in %v", raw)
	}

	// BYOC hosts: owner and admin of a BYOC team, platform admin for any team.
	for _, jwt := range []string{b.owner.JWT, b.teamAdminJWT} {
		got := e.createHost(t, jwt, map[string]any{"type": "byoc"})
		if got.Host.Type != "byoc" || got.Host.TeamID != b.owner.TeamID {
			t.Fatalf("byoc host = %+v", got.Host)
		}
	}
	got := e.createHost(t, e.admin.JWT, map[string]any{"type": "byoc", "team_id": b.owner.TeamID})
	if got.Host.TeamID != b.owner.TeamID {
		t.Fatalf("admin byoc host = %+v", got.Host)
	}
	// The owner names the team explicitly; an owner of the team acting from another team may too.
	e.createHost(t, b.owner.JWT, map[string]any{"type": "byoc", "team_id": b.owner.TeamID})
	crossJWT := e.JWT(t, b.teamAdmin.User, b.teamAdmin.Team, auth.RoleOwner)
	e.createHost(t, crossJWT, map[string]any{"type": "byoc", "team_id": b.owner.TeamID})

	tests := []struct {
		name   string
		jwt    string
		body   any
		status int
		code   string
	}{
		{"regular by non-admin", plain.JWT, map[string]any{"type": "regular"}, 403, "forbidden"},
		{"byoc of a team without byoc", plain.JWT, map[string]any{"type": "byoc"}, 403, "forbidden"},
		{"byoc by a member", b.memberJWT, map[string]any{"type": "byoc"}, 403, "forbidden"},
		{"byoc of another team", plain.JWT, map[string]any{"type": "byoc", "team_id": b.owner.TeamID}, 404, "not_found"},
		{"byoc of a missing team", e.admin.JWT, map[string]any{"type": "byoc", "team_id": ids.Team.Format([16]byte{9})}, 404, "not_found"},
		{"bad team id", e.admin.JWT, map[string]any{"type": "byoc", "team_id": "team-x"}, 400, "invalid_request"},
		{"regular with team", e.admin.JWT, map[string]any{"type": "regular", "team_id": b.owner.TeamID}, 400, "invalid_request"},
		{"unknown type", e.admin.JWT, map[string]any{"type": "huge"}, 400, "invalid_request"},
		{"missing type", e.admin.JWT, map[string]any{}, 400, "invalid_request"},
		{"bad tag", e.admin.JWT, map[string]any{"type": "regular", "tags": []string{"a b"}}, 400, "invalid_request"},
		{"empty tag", e.admin.JWT, map[string]any{"type": "regular", "tags": []string{""}}, 400, "invalid_request"},
		{"long tag", e.admin.JWT, map[string]any{"type": "regular", "tags": []string{strings.Repeat("t", 65)}}, 400, "invalid_request"},
		{"long provider", e.admin.JWT, map[string]any{"type": "regular", "provider": strings.Repeat("p", 129)}, 400, "invalid_request"},
		{"wrong field type", e.admin.JWT, map[string]any{"type": 1}, 400, "invalid_request"},
		{"not json", e.admin.JWT, []byte("{"), 400, "invalid_request"},
		{"no credentials", "", map[string]any{"type": "regular"}, 401, "unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want(t, e.Do(t, "POST", "/v1/hosts", cptest.Bearer(tt.jwt), tt.body), tt.status, tt.code)
		})
	}
	// An API key is not accepted on host routes.
	want(t, e.Do(t, "POST", "/v1/hosts", cptest.Key(e.admin.APIKey), map[string]any{"type": "regular"}), 401, "unauthorized")
	// Failed requests created nothing: 1 regular + 5 byoc.
	all, err := e.Store.ListHosts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 6 {
		t.Fatalf("%d hosts, want 6", len(all))
	}
}

func TestListAndGetHosts(t *testing.T) {
	e := newEnv(t)
	b := e.byocTeam(t, "byoc")
	other := e.byocTeam(t, "other")
	plain := e.NewAccount(t, "plain", false)
	regular := e.createHost(t, e.admin.JWT, map[string]any{"type": "regular"}).Host
	mine := e.createHost(t, b.owner.JWT, map[string]any{"type": "byoc"}).Host
	theirs := e.createHost(t, other.owner.JWT, map[string]any{"type": "byoc"}).Host

	list := func(jwt string) []fleet.Host {
		t.Helper()
		res := e.Do(t, "GET", "/v1/hosts", cptest.Bearer(jwt), nil)
		want(t, res, 200, "")
		var out []fleet.Host
		res.JSON(t, &out)
		return out
	}
	idsOf := func(hs []fleet.Host) []string {
		var out []string
		for _, h := range hs {
			out = append(out, h.ID)
		}
		return out
	}
	adminView := list(e.admin.JWT)
	if got := idsOf(adminView); !slices.Equal(got, []string{regular.ID, mine.ID, theirs.ID}) {
		t.Fatalf("admin list = %v", got)
	}
	if adminView[1].TeamName != "byoc's Team" || adminView[0].TeamName != "" {
		t.Fatalf("admin team names: %+v", adminView)
	}
	for _, jwt := range []string{b.owner.JWT, b.memberJWT} {
		got := list(jwt)
		if !slices.Equal(idsOf(got), []string{mine.ID}) || got[0].TeamName != "" {
			t.Fatalf("team list = %+v", got)
		}
	}
	if got := list(plain.JWT); len(got) != 0 {
		t.Fatalf("plain list = %v", got)
	}
	// A user without a team sees nothing.
	if got := list(e.JWT(t, plain.User, [16]byte{}, "")); len(got) != 0 {
		t.Fatalf("no-team list = %v", got)
	}

	var one fleet.Host
	res := e.Do(t, "GET", hostPath(mine.ID), cptest.Bearer(b.memberJWT), nil)
	want(t, res, 200, "")
	res.JSON(t, &one)
	if one.ID != mine.ID || one.TeamID != b.owner.TeamID {
		t.Fatalf("get = %+v", one)
	}
	res = e.Do(t, "GET", hostPath(mine.ID), cptest.Bearer(e.admin.JWT), nil)
	res.JSON(t, &one)
	if one.TeamName != "byoc's Team" {
		t.Fatalf("admin get = %+v", one)
	}
	want(t, e.Do(t, "GET", hostPath(theirs.ID), cptest.Bearer(b.owner.JWT), nil), 404, "not_found")
	want(t, e.Do(t, "GET", hostPath(regular.ID), cptest.Bearer(b.owner.JWT), nil), 404, "not_found")
	want(t, e.Do(t, "GET", hostPath("host-nope"), cptest.Bearer(e.admin.JWT), nil), 400, "invalid_request")
	want(t, e.Do(t, "GET", hostPath(ids.Host.Format([16]byte{1})), cptest.Bearer(e.admin.JWT), nil), 404, "not_found")
	want(t, e.Do(t, "GET", "/v1/hosts", cptest.Cred{}, nil), 401, "unauthorized")
}

func TestTags(t *testing.T) {
	e := newEnv(t)
	b := e.byocTeam(t, "byoc")
	other := e.NewAccount(t, "other", false)
	h := e.createHost(t, b.owner.JWT, map[string]any{"type": "byoc", "tags": []string{"a"}}).Host

	tags := func(jwt string) []string {
		t.Helper()
		res := e.Do(t, "GET", hostPath(h.ID, "tags"), cptest.Bearer(jwt), nil)
		want(t, res, 200, "")
		var out []string
		res.JSON(t, &out)
		return out
	}
	want(t, e.Do(t, "POST", hostPath(h.ID, "tags"), cptest.Bearer(b.teamAdminJWT), map[string]string{"tag": "gpu.v100_x-2"}), 204, "")
	want(t, e.Do(t, "POST", hostPath(h.ID, "tags"), cptest.Bearer(e.admin.JWT), map[string]string{"tag": strings.Repeat("z", 64)}), 204, "")
	if got := tags(b.memberJWT); !slices.Equal(got, []string{"a", "gpu.v100_x-2", strings.Repeat("z", 64)}) {
		t.Fatalf("tags = %v", got)
	}
	want(t, e.Do(t, "POST", hostPath(h.ID, "tags"), cptest.Bearer(b.owner.JWT), map[string]string{"tag": "a"}), 409, "conflict")
	want(t, e.Do(t, "POST", hostPath(h.ID, "tags"), cptest.Bearer(b.owner.JWT), map[string]string{"tag": ""}), 400, "invalid_request")
	want(t, e.Do(t, "POST", hostPath(h.ID, "tags"), cptest.Bearer(b.owner.JWT), map[string]string{"tag": strings.Repeat("z", 65)}), 400, "invalid_request")
	want(t, e.Do(t, "POST", hostPath(h.ID, "tags"), cptest.Bearer(b.owner.JWT), map[string]string{}), 400, "invalid_request")
	want(t, e.Do(t, "POST", hostPath(h.ID, "tags"), cptest.Bearer(b.owner.JWT), nil), 400, "invalid_request")
	want(t, e.Do(t, "POST", hostPath(h.ID, "tags"), cptest.Bearer(b.memberJWT), map[string]string{"tag": "m"}), 403, "forbidden")
	want(t, e.Do(t, "POST", hostPath(h.ID, "tags"), cptest.Bearer(other.JWT), map[string]string{"tag": "m"}), 404, "not_found")
	want(t, e.Do(t, "GET", hostPath(h.ID, "tags"), cptest.Bearer(other.JWT), nil), 404, "not_found")

	want(t, e.Do(t, "DELETE", hostPath(h.ID, "tags", "a"), cptest.Bearer(b.owner.JWT), nil), 204, "")
	want(t, e.Do(t, "DELETE", hostPath(h.ID, "tags", "a"), cptest.Bearer(b.owner.JWT), nil), 404, "not_found")
	want(t, e.Do(t, "DELETE", hostPath(h.ID, "tags", "gpu.v100_x-2"), cptest.Bearer(b.memberJWT), nil), 403, "forbidden")
	want(t, e.Do(t, "DELETE", hostPath(h.ID, "tags", "gpu.v100_x-2"), cptest.Bearer(other.JWT), nil), 404, "not_found")
	want(t, e.Do(t, "DELETE", hostPath("host-bad", "tags", "x"), cptest.Bearer(b.owner.JWT), nil), 400, "invalid_request")
	if got := tags(b.owner.JWT); !slices.Equal(got, []string{"gpu.v100_x-2", strings.Repeat("z", 64)}) {
		t.Fatalf("tags = %v", got)
	}
}

func TestDeleteHost(t *testing.T) {
	e := newEnv(t)
	b := e.byocTeam(t, "byoc")
	other := e.NewAccount(t, "other", false)
	creds := e.register(t, e.createHost(t, b.owner.JWT, map[string]any{"type": "byoc"}).RegistrationToken, "127.0.0.1:1")
	h := creds.Host
	hid := hostUUID(t, h.ID)
	running := e.addCapsule(t, b.owner.Team, hid, store.CapsuleRunning, 512)
	paused := e.addCapsule(t, b.owner.Team, hid, store.CapsulePaused, 512)
	done := e.addCapsule(t, b.owner.Team, hid, store.CapsuleStopped, 512)
	active := []string{ids.Capsule.Format(running), ids.Capsule.Format(paused)}

	// Preview lists live capsules (mirrored).
	res := e.Do(t, "GET", hostPath(h.ID, "delete-preview"), cptest.Bearer(b.memberJWT), nil)
	want(t, res, 200, "")
	var prev fleet.DeletePreview
	res.JSON(t, &prev)
	if prev.Host.ID != h.ID || !slices.Equal(prev.CapsuleIDs, active) || !slices.Equal(prev.SandboxIDs, active) {
		t.Fatalf("preview = %+v", prev)
	}
	want(t, e.Do(t, "GET", hostPath(h.ID, "delete-preview"), cptest.Bearer(other.JWT), nil), 404, "not_found")

	// Without force: 409 with the capsules; nothing changes.
	res = e.Do(t, "DELETE", hostPath(h.ID), cptest.Bearer(b.owner.JWT), nil)
	want(t, res, 409, "has_active_capsules")
	f := errorFields(t, res)
	for _, k := range []string{"capsule_ids", "sandbox_ids"} {
		got, _ := f[k].([]any)
		if len(got) != 2 || got[0] != active[0] || got[1] != active[1] {
			t.Fatalf("%s = %v", k, f[k])
		}
	}
	want(t, e.Do(t, "DELETE", hostPath(h.ID)+"?force=false", cptest.Bearer(b.owner.JWT), nil), 409, "has_active_capsules")
	want(t, e.Do(t, "DELETE", hostPath(h.ID)+"?force=maybe", cptest.Bearer(b.owner.JWT), nil), 400, "invalid_request")
	want(t, e.Do(t, "DELETE", hostPath(h.ID)+"?force=true", cptest.Bearer(b.memberJWT), nil), 403, "forbidden")
	want(t, e.Do(t, "DELETE", hostPath(h.ID)+"?force=true", cptest.Bearer(other.JWT), nil), 404, "not_found")
	if s := e.capsuleStatus(t, running); s != store.CapsuleRunning {
		t.Fatalf("running capsule is %s", s)
	}

	// With force: live capsules stop, the host is gone, its credentials are dead. The agent at
	// 127.0.0.1:1 is unreachable: Terminate is best effort.
	want(t, e.Do(t, "DELETE", hostPath(h.ID)+"?force=true", cptest.Bearer(b.owner.JWT), nil), 204, "")
	for id, st := range map[[16]byte]string{running: "stopped", paused: "stopped", done: "stopped"} {
		if got := e.capsuleStatus(t, id); got != st {
			t.Fatalf("capsule %v is %s, want %s", id, got, st)
		}
	}
	want(t, e.Do(t, "GET", hostPath(h.ID), cptest.Bearer(b.owner.JWT), nil), 404, "not_found")
	want(t, e.Do(t, "DELETE", hostPath(h.ID), cptest.Bearer(b.owner.JWT), nil), 404, "not_found")
	want(t, e.Do(t, "POST", hostPath(h.ID, "heartbeat"), cptest.Cred{HostToken: creds.Token}, nil), 404, "not_found")
	want(t, e.Do(t, "POST", "/v1/hosts/auth/refresh", cptest.Cred{}, map[string]string{"refresh_token": creds.RefreshToken}), 401, "unauthorized")
	if got := e.auditActions(t, h.ID); !slices.Equal(got, []string{"host.create", "host.delete"}) {
		t.Fatalf("audit = %v", got)
	}

	// A host without capsules is deleted without force, by a platform admin too.
	p := e.createHost(t, e.admin.JWT, map[string]any{"type": "regular"}).Host
	want(t, e.Do(t, "DELETE", hostPath(p.ID), cptest.Bearer(b.owner.JWT), nil), 404, "not_found")
	want(t, e.Do(t, "DELETE", hostPath(p.ID), cptest.Bearer(e.admin.JWT), nil), 204, "")
	want(t, e.Do(t, "GET", hostPath(p.ID), cptest.Bearer(e.admin.JWT), nil), 404, "not_found")
}
