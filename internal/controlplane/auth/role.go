package auth

import (
	"fmt"

	"github.com/wrenn/wrenn/internal/apierr"
)

// Role is a user's role in a team (docs/api.md): exactly one owner, any number of admins and members.
type Role string

const (
	RoleOwner  Role = "owner"
	RoleAdmin  Role = "admin"
	RoleMember Role = "member"
)

// ParseRole accepts owner, admin and member.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if !r.Valid() {
		return "", apierr.InvalidRequestf("invalid role %q: must be owner, admin or member", s)
	}
	return r, nil
}

// ParseAssignableRole accepts the roles a member can be given by PATCH …/members/{uid}: admin and member.
// Ownership is never assigned this way.
func ParseAssignableRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAdmin, RoleMember:
		return r, nil
	default:
		return "", apierr.InvalidRequestf("invalid role %q: must be admin or member", s)
	}
}

// Valid reports whether r is one of the three roles.
func (r Role) Valid() bool { return r.rank() > 0 }

func (r Role) rank() int {
	switch r {
	case RoleOwner:
		return 3
	case RoleAdmin:
		return 2
	case RoleMember:
		return 1
	default:
		return 0
	}
}

// AtLeast reports whether r is min or above (owner > admin > member). An invalid r or min is never
// satisfied, so a mistake denies rather than allows.
func (r Role) AtLeast(min Role) bool { return r.Valid() && min.Valid() && r.rank() >= min.rank() }

func (r Role) String() string {
	if r == "" {
		return "none"
	}
	return string(r)
}

// CanUpdateTeam: PATCH /v1/teams/{id} (rename) — owner or admin.
func (r Role) CanUpdateTeam() bool { return r.AtLeast(RoleAdmin) }

// CanDeleteTeam: DELETE /v1/teams/{id} — owner only.
func (r Role) CanDeleteTeam() bool { return r == RoleOwner }

// CanManageMembers: POST /v1/teams/{id}/members (add) — owner or admin.
func (r Role) CanManageMembers() bool { return r.AtLeast(RoleAdmin) }

// CanModifyMember: PATCH (role change) and DELETE of …/members/{uid} — an owner or admin acting on anyone
// but the owner (403 on the owner).
func (r Role) CanModifyMember(target Role) bool {
	return r.CanManageMembers() && target.Valid() && target != RoleOwner
}

// CanLeaveTeam: POST /v1/teams/{id}/leave — any member but the owner.
func (r Role) CanLeaveTeam() bool { return r.Valid() && r != RoleOwner }

// CanViewAdminAudit: audit entries of scope "admin" (keys, members, roles, team settings, hosts,
// channels) are visible to owners and admins only (docs/api.md).
func (r Role) CanViewAdminAudit() bool { return r.AtLeast(RoleAdmin) }

// Host types (docs/api.md).
const (
	HostRegular = "regular"
	HostBYOC    = "byoc"
)

// CanCreateHost: POST /v1/hosts (docs/api.md). A regular host needs a platform admin; a BYOC host needs a platform
// admin, or an owner/admin (role, in the host's team) of a team with is_byoc. An unknown type is an
// invalid request.
func CanCreateHost(id Identity, hostType string, role Role, teamIsBYOC bool) error {
	switch hostType {
	case HostRegular:
		if id.IsAdmin {
			return nil
		}
		return apierr.Forbidden("regular hosts can be created by platform admins only")
	case HostBYOC:
		if id.IsAdmin || (teamIsBYOC && role.AtLeast(RoleAdmin)) {
			return nil
		}
		if !teamIsBYOC {
			return apierr.Forbidden("team is not enabled for BYOC hosts")
		}
		return apierr.Forbidden("BYOC hosts can be created by team owners and admins only")
	default:
		return apierr.InvalidRequest(fmt.Sprintf("invalid host type %q: must be regular or byoc", hostType))
	}
}
