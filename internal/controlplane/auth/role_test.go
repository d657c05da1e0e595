package auth

import (
	"context"
	"errors"
	"testing"

	"github.com/wrenn/wrenn/internal/apierr"
)

func TestParseRole(t *testing.T) {
	tests := []struct {
		in         string
		want       Role
		ok         bool
		assignable bool
	}{
		{"owner", RoleOwner, true, false},
		{"admin", RoleAdmin, true, true},
		{"member", RoleMember, true, true},
		{"", "", false, false},
		{"Owner", "", false, false},
		{"superuser", "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRole(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("ParseRole(%q) = %q, %v", tt.in, got, err)
			}
			if err != nil {
				requireCode(t, err, 400, apierr.CodeInvalidRequest)
			}
			ar, err := ParseAssignableRole(tt.in)
			if (err == nil) != tt.assignable {
				t.Fatalf("ParseAssignableRole(%q) = %q, %v", tt.in, ar, err)
			}
			if err != nil {
				requireCode(t, err, 400, apierr.CodeInvalidRequest)
			} else if ar != tt.want {
				t.Fatalf("ParseAssignableRole(%q) = %q", tt.in, ar)
			}
		})
	}
}

func TestRoleOrdering(t *testing.T) {
	roles := []Role{RoleOwner, RoleAdmin, RoleMember, "", "bogus"}
	want := map[[2]Role]bool{
		{RoleOwner, RoleOwner}: true, {RoleOwner, RoleAdmin}: true, {RoleOwner, RoleMember}: true,
		{RoleAdmin, RoleAdmin}: true, {RoleAdmin, RoleMember}: true,
		{RoleMember, RoleMember}: true,
	}
	for _, r := range roles {
		for _, min := range roles {
			if got := r.AtLeast(min); got != want[[2]Role{r, min}] {
				t.Errorf("%q.AtLeast(%q) = %v", r, min, got)
			}
		}
	}
	if Role("").String() != "none" || RoleAdmin.String() != "admin" {
		t.Fatal("Role.String")
	}
}

func TestRolePermissions(t *testing.T) {
	type perms struct{ update, del, manage, leave, audit bool }
	tests := []struct {
		role Role
		want perms
	}{
		{RoleOwner, perms{update: true, del: true, manage: true, leave: false, audit: true}},
		{RoleAdmin, perms{update: true, del: false, manage: true, leave: true, audit: true}},
		{RoleMember, perms{update: false, del: false, manage: false, leave: true, audit: false}},
		{"", perms{}},
		{"bogus", perms{}},
	}
	for _, tt := range tests {
		t.Run(string(tt.role), func(t *testing.T) {
			got := perms{tt.role.CanUpdateTeam(), tt.role.CanDeleteTeam(), tt.role.CanManageMembers(), tt.role.CanLeaveTeam(), tt.role.CanViewAdminAudit()}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCanModifyMember(t *testing.T) {
	tests := []struct {
		actor, target Role
		want          bool
	}{
		{RoleOwner, RoleAdmin, true},
		{RoleOwner, RoleMember, true},
		{RoleOwner, RoleOwner, false},
		{RoleAdmin, RoleAdmin, true},
		{RoleAdmin, RoleMember, true},
		{RoleAdmin, RoleOwner, false},
		{RoleMember, RoleMember, false},
		{RoleMember, RoleAdmin, false},
		{RoleOwner, "", false},
		{"", RoleMember, false},
	}
	for _, tt := range tests {
		if got := tt.actor.CanModifyMember(tt.target); got != tt.want {
			t.Errorf("%q.CanModifyMember(%q) = %v, want %v", tt.actor, tt.target, got, tt.want)
		}
	}
}

func TestCanCreateHost(t *testing.T) {
	admin := Identity{Method: MethodJWT, IsAdmin: true}
	user := Identity{Method: MethodJWT}
	tests := []struct {
		name     string
		id       Identity
		hostType string
		role     Role
		byoc     bool
		status   int // 0 = allowed
	}{
		{"admin regular", admin, HostRegular, "", false, 0},
		{"owner regular", user, HostRegular, RoleOwner, true, 403},
		{"admin byoc without byoc team", admin, HostBYOC, "", false, 0},
		{"owner byoc team", user, HostBYOC, RoleOwner, true, 0},
		{"team admin byoc team", user, HostBYOC, RoleAdmin, true, 0},
		{"member byoc team", user, HostBYOC, RoleMember, true, 403},
		{"owner non-byoc team", user, HostBYOC, RoleOwner, false, 403},
		{"no role", user, HostBYOC, "", true, 403},
		{"unknown type", admin, "cloud", "", false, 400},
		{"empty type", admin, "", "", false, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CanCreateHost(tt.id, tt.hostType, tt.role, tt.byoc)
			if tt.status == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			code := apierr.CodeForbidden
			if tt.status == 400 {
				code = apierr.CodeInvalidRequest
			}
			requireCode(t, err, tt.status, code)
		})
	}
}

func TestIdentityActor(t *testing.T) {
	tests := []struct {
		name             string
		id               Identity
		typ, actor, disp string
	}{
		{"user", Identity{Method: MethodJWT, UserID: "usr-1", Name: "Ada", Email: "a@x"}, "user", "usr-1", "Ada"},
		{"user without name", Identity{Method: MethodJWT, UserID: "usr-1", Email: "a@x"}, "user", "usr-1", "a@x"},
		{"api key", Identity{Method: MethodAPIKey, APIKeyID: "key-1", APIKeyName: "ci"}, "api_key", "key-1", "ci"},
		{"host", Identity{Method: MethodHost, HostID: "host-1"}, "system", "", ""},
		{"zero", Identity{}, "system", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, actor, disp := tt.id.Actor()
			if typ != tt.typ || actor != tt.actor || disp != tt.disp {
				t.Fatalf("Actor() = %q %q %q", typ, actor, disp)
			}
		})
	}
}

func TestIdentityContext(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Fatal("identity in empty context")
	}
	want := Identity{Method: MethodAPIKey, TeamID: "team-x", APIKeyID: "key-1"}
	got, ok := FromContext(WithIdentity(context.Background(), want))
	if !ok || got != want {
		t.Fatalf("FromContext = %+v, %v", got, ok)
	}
}

func TestStrings(t *testing.T) {
	tests := []struct{ got, want string }{
		{MethodJWT.String(), "jwt"}, {MethodAPIKey.String(), "api_key"}, {MethodHost.String(), "host"}, {Method(9).String(), "Method(9)"},
		{KindJWT.String(), "JWT"}, {KindKeyOrJWT.String(), "KEY|JWT"}, {KindAdmin.String(), "ADMIN"}, {KindHost.String(), "HOST"}, {Kind(9).String(), "Kind(9)"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// requireCode fails unless err is an *apierr.Error with status and code.
func requireCode(t *testing.T, err error, status int, code string) *apierr.Error {
	t.Helper()
	var e *apierr.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not *apierr.Error", err, err)
	}
	if e.Status != status || e.Code != code {
		t.Fatalf("got %d %s (%q), want %d %s", e.Status, e.Code, e.Message, status, code)
	}
	return e
}
