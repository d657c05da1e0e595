package fleet

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	hostagentv1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/audit"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Limits of host fields set by users.
const (
	maxTagLength  = 64
	maxTextLength = 128 // provider, availability_zone
	// terminateTimeout bounds the best-effort Terminate call of a host deletion.
	terminateTimeout = 5 * time.Second
)

// Audit actions of hosts (docs/api.md).
const (
	actionCreate = "host.create"
	actionDelete = "host.delete"
	actionDown   = "host.down"
	actionUp     = "host.up"
)

// CreateHostRequest is the body of POST /v1/hosts.
type CreateHostRequest struct {
	Type             string   `json:"type"`
	TeamID           string   `json:"team_id"`
	Provider         string   `json:"provider"`
	AvailabilityZone string   `json:"availability_zone"`
	Tags             []string `json:"tags"`
}

// createHost creates a pending host and its first registration token.
func (s *Service) createHost(ctx context.Context, caller auth.Identity, req CreateHostRequest) (HostWithToken, error) {
	var team *uuid.UUID
	switch req.Type {
	case store.HostRegular:
		if req.TeamID != "" {
			return HostWithToken{}, apierr.InvalidRequest("team_id is only for byoc hosts: omit it for a regular host")
		}
		if err := auth.CanCreateHost(caller, req.Type, "", false); err != nil {
			return HostWithToken{}, err
		}
	case store.HostBYOC:
		t, err := s.byocTeam(ctx, caller, req.TeamID)
		if err != nil {
			return HostWithToken{}, err
		}
		team = &t
	default:
		return HostWithToken{}, apierr.InvalidRequestf("invalid host type %q: must be regular or byoc", req.Type)
	}
	provider, err := optionalText("provider", req.Provider)
	if err != nil {
		return HostWithToken{}, err
	}
	zone, err := optionalText("availability_zone", req.AvailabilityZone)
	if err != nil {
		return HostWithToken{}, err
	}
	tags := make([]string, 0, len(req.Tags))
	for _, t := range req.Tags {
		if err := checkTag(t); err != nil {
			return HostWithToken{}, err
		}
		if !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	createdBy := userUUID(caller)
	var out HostWithToken
	err = s.store.Tx(ctx, func(q *db.Queries) error {
		h, err := q.CreateHost(ctx, db.CreateHostParams{
			Type: req.Type, TeamID: team, Provider: provider, AvailabilityZone: zone, Tags: tags, CreatedBy: createdBy,
		})
		if err != nil {
			return fmt.Errorf("create host: %w", err)
		}
		tok, err := newRegistrationToken(ctx, q, h.ID, createdBy)
		if err != nil {
			return err
		}
		out = HostWithToken{Host: hostJSON(h, nil), RegistrationToken: tok}
		audit.Record(ctx, q, audit.Entry{
			Team: teamOf(h), Actor: caller, ResourceType: "host", ResourceID: out.Host.ID,
			Action: actionCreate, Scope: audit.ScopeAdmin, Metadata: map[string]any{"type": h.Type},
		})
		return nil
	})
	if err != nil {
		return HostWithToken{}, apierr.Internal(err)
	}
	s.log.Info("host created", "host_id", out.Host.ID, "type", req.Type, "by", caller.UserID)
	return out, nil
}

// byocTeam resolves the team of a new BYOC host (team_id, else the caller's team) and checks the caller
// may add hosts to it: a platform admin, or an owner/admin of that team when it has is_byoc. Teams the
// caller does not belong to are not found.
func (s *Service) byocTeam(ctx context.Context, caller auth.Identity, raw string) (uuid.UUID, error) {
	if raw == "" {
		raw = caller.TeamID
		if raw == "" {
			return uuid.Nil, apierr.InvalidRequest("team_id is required for a byoc host: the caller has no team")
		}
	}
	team, err := ids.Team.Parse(raw)
	if err != nil {
		return uuid.Nil, apierr.InvalidRequest("invalid team ID")
	}
	t, err := s.store.GetTeam(ctx, team)
	if err != nil {
		if store.IsNotFound(err) {
			return uuid.Nil, apierr.NotFound("team not found")
		}
		return uuid.Nil, apierr.Internal(fmt.Errorf("read team: %w", err))
	}
	var role auth.Role
	switch {
	case raw == caller.TeamID:
		role = caller.Role
	default:
		if uid := userUUID(caller); uid != nil {
			m, err := s.store.GetTeamMember(ctx, db.GetTeamMemberParams{TeamID: team, UserID: *uid})
			switch {
			case err == nil:
				role = auth.Role(m.Role)
			case !store.IsNotFound(err):
				return uuid.Nil, apierr.Internal(fmt.Errorf("read membership: %w", err))
			}
		}
	}
	if !caller.IsAdmin && !role.Valid() {
		return uuid.Nil, apierr.NotFound("team not found")
	}
	if err := auth.CanCreateHost(caller, store.HostBYOC, role, t.IsBYOC); err != nil {
		return uuid.Nil, err
	}
	return team, nil
}

// listHosts returns every host to platform admins (with team names), and the BYOC hosts of their team to
// everyone else.
func (s *Service) listHosts(ctx context.Context, caller auth.Identity) ([]Host, error) {
	out := []Host{}
	if caller.IsAdmin {
		rows, err := s.store.ListHostsWithTeam(ctx)
		if err != nil {
			return nil, apierr.Internal(fmt.Errorf("list hosts: %w", err))
		}
		for _, r := range rows {
			out = append(out, hostJSON(r.Host, r.TeamName))
		}
		return out, nil
	}
	if caller.TeamID == "" {
		return out, nil
	}
	team, err := ids.Team.Parse(caller.TeamID)
	if err != nil {
		return out, nil
	}
	rows, err := s.store.ListHostsByTeam(ctx, team)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("list hosts: %w", err))
	}
	for _, h := range rows {
		out = append(out, hostJSON(h, nil))
	}
	return out, nil
}

// visibleHost returns host raw when the caller may see it: platform admins see every host (with its
// team name), others the BYOC hosts of their team. Anything else is not found.
func (s *Service) visibleHost(ctx context.Context, caller auth.Identity, raw string) (db.Host, Host, error) {
	id, err := ids.Host.Parse(raw)
	if err != nil {
		return db.Host{}, Host{}, apierr.InvalidRequest("invalid host ID")
	}
	row, err := s.store.GetHostWithTeam(ctx, id)
	if err != nil {
		if store.IsNotFound(err) {
			return db.Host{}, Host{}, apierr.NotFound("host not found")
		}
		return db.Host{}, Host{}, apierr.Internal(fmt.Errorf("read host: %w", err))
	}
	if caller.IsAdmin {
		return row.Host, hostJSON(row.Host, row.TeamName), nil
	}
	if row.Host.TeamID == nil || caller.TeamID == "" || ids.Team.Format(*row.Host.TeamID) != caller.TeamID {
		return db.Host{}, Host{}, apierr.NotFound("host not found")
	}
	return row.Host, hostJSON(row.Host, nil), nil
}

// manageableHost is visibleHost for changes (delete, token, tags): platform admins, or owners and
// admins of the BYOC host's team.
func (s *Service) manageableHost(ctx context.Context, caller auth.Identity, raw string) (db.Host, Host, error) {
	h, out, err := s.visibleHost(ctx, caller, raw)
	if err != nil {
		return db.Host{}, Host{}, err
	}
	if !caller.IsAdmin && !caller.Role.AtLeast(auth.RoleAdmin) {
		return db.Host{}, Host{}, apierr.Forbidden("only team owners and admins can manage BYOC hosts")
	}
	return h, out, nil
}

// deletePreview lists the capsules deleting host raw would destroy.
func (s *Service) deletePreview(ctx context.Context, caller auth.Identity, raw string) (DeletePreview, error) {
	h, out, err := s.visibleHost(ctx, caller, raw)
	if err != nil {
		return DeletePreview{}, err
	}
	caps, err := s.store.ListCapsulesByHost(ctx, h.ID)
	if err != nil {
		return DeletePreview{}, apierr.Internal(fmt.Errorf("list capsules of host: %w", err))
	}
	capIDs := make([]string, 0, len(caps))
	for _, c := range caps {
		capIDs = append(capIDs, ids.Capsule.Format(c.ID))
	}
	return DeletePreview{Host: out, CapsuleIDs: capIDs, SandboxIDs: capIDs}, nil
}

// deleteHost deletes host raw. Capsules on it that are not stopped or errored block the deletion
// (409 has_active_capsules) unless force, which marks them stopped. A registered host's agent is then
// asked to terminate (destroy everything and exit); an unreachable agent only gets the error logged
// (it also shuts down when its next heartbeat finds the host gone).
func (s *Service) deleteHost(ctx context.Context, caller auth.Identity, raw string, force bool) error {
	h, _, err := s.manageableHost(ctx, caller, raw)
	if err != nil {
		return err
	}
	hostID := ids.Host.Format(h.ID)
	var stopped []string
	err = s.store.Tx(ctx, func(q *db.Queries) error {
		locked, err := q.LockHost(ctx, h.ID)
		if err != nil {
			if store.IsNotFound(err) {
				return apierr.NotFound("host not found")
			}
			return apierr.Internal(fmt.Errorf("lock host: %w", err))
		}
		h = locked
		caps, err := q.ListCapsulesByHost(ctx, h.ID)
		if err != nil {
			return apierr.Internal(fmt.Errorf("list capsules of host: %w", err))
		}
		if len(caps) > 0 && !force {
			capIDs := make([]string, 0, len(caps))
			for _, c := range caps {
				capIDs = append(capIDs, ids.Capsule.Format(c.ID))
			}
			return apierr.HasActiveCapsules("host has active capsules: destroy them first or delete with ?force=true", capIDs)
		}
		if force {
			rows, err := q.StopHostCapsules(ctx, h.ID)
			if err != nil {
				return apierr.Internal(fmt.Errorf("stop capsules of host: %w", err))
			}
			for _, r := range rows {
				stopped = append(stopped, ids.Capsule.Format(r.ID))
			}
		}
		if _, err := q.DeleteHost(ctx, h.ID); err != nil {
			return apierr.Internal(fmt.Errorf("delete host: %w", err))
		}
		meta := map[string]any{"force": force}
		if len(stopped) > 0 {
			meta["capsule_ids"] = stopped
		}
		audit.Record(ctx, q, audit.Entry{
			Team: teamOf(h), Actor: caller, ResourceType: "host", ResourceID: hostID,
			Action: actionDelete, Scope: audit.ScopeAdmin, Metadata: meta,
		})
		return nil
	})
	if err != nil {
		return err
	}
	s.dropConns(h.ID)
	s.log.Info("host deleted", "host_id", hostID, "force", force, "stopped_capsules", len(stopped), "by", caller.UserID)
	if h.Address != nil {
		s.terminate(ctx, h)
	}
	return nil
}

// terminate asks a deleted host's agent to destroy its capsules and exit, best effort.
func (s *Service) terminate(ctx context.Context, h db.Host) {
	hostID := ids.Host.Format(h.ID)
	c, err := s.newConn(h)
	if err != nil {
		s.log.Warn("terminate deleted host", "host_id", hostID, "err", err)
		return
	}
	defer c.transport.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), terminateTimeout)
	defer cancel()
	if _, err := c.client.Terminate(ctx, connect.NewRequest(&hostagentv1.TerminateRequest{})); err != nil {
		s.log.Warn("terminate deleted host (its agent also stops when its next heartbeat finds the host gone)",
			"host_id", hostID, "address", *h.Address, "err", err)
		return
	}
	s.log.Info("deleted host's agent terminated", "host_id", hostID)
}

// newToken replaces the unused registration tokens of a pending host with a new one.
func (s *Service) newToken(ctx context.Context, caller auth.Identity, raw string) (HostWithToken, error) {
	h, _, err := s.manageableHost(ctx, caller, raw)
	if err != nil {
		return HostWithToken{}, err
	}
	var out HostWithToken
	err = s.store.Tx(ctx, func(q *db.Queries) error {
		locked, err := q.LockHost(ctx, h.ID)
		if err != nil {
			if store.IsNotFound(err) {
				return apierr.NotFound("host not found")
			}
			return apierr.Internal(fmt.Errorf("lock host: %w", err))
		}
		if locked.Status != store.HostPending {
			return apierr.InvalidState(fmt.Sprintf("host is not pending (status: %s): registration tokens are issued only before the agent registers", locked.Status))
		}
		if locked.Address != nil {
			return apierr.InvalidState("host is already registered (its agent is not reachable yet): registration tokens are issued only before the agent registers")
		}
		if _, err := q.DeleteUnusedHostRegistrationTokens(ctx, h.ID); err != nil {
			return apierr.Internal(fmt.Errorf("delete old registration tokens: %w", err))
		}
		tok, err := newRegistrationToken(ctx, q, h.ID, userUUID(caller))
		if err != nil {
			return apierr.Internal(err)
		}
		out = HostWithToken{Host: hostJSON(locked, nil), RegistrationToken: tok}
		return nil
	})
	if err != nil {
		return HostWithToken{}, err
	}
	if caller.IsAdmin {
		// Admin views carry the team name; the token route answers like GET.
		if _, full, err := s.visibleHost(ctx, caller, raw); err == nil {
			out.Host = full
		}
	}
	return out, nil
}

// newRegistrationToken stores a new one-time registration token of host and returns its text.
func newRegistrationToken(ctx context.Context, q *db.Queries, host uuid.UUID, createdBy *uuid.UUID) (string, error) {
	tok := auth.HostRegistrationToken.New()
	if _, err := q.CreateHostRegistrationToken(ctx, db.CreateHostRegistrationTokenParams{
		HostID: host, TokenHash: tok.Hash, CreatedBy: createdBy, TTLSeconds: ttlSeconds(auth.HostRegistrationToken.TTL),
	}); err != nil {
		return "", fmt.Errorf("create registration token: %w", err)
	}
	return tok.Plain, nil
}

// hostTags returns the tags of host raw.
func (s *Service) hostTags(ctx context.Context, caller auth.Identity, raw string) ([]string, error) {
	_, out, err := s.visibleHost(ctx, caller, raw)
	if err != nil {
		return nil, err
	}
	return out.Tags, nil
}

// addTag adds tag to host raw; a tag it already has is 409 conflict.
func (s *Service) addTag(ctx context.Context, caller auth.Identity, raw, tag string) error {
	if err := checkTag(tag); err != nil {
		return err
	}
	h, _, err := s.manageableHost(ctx, caller, raw)
	if err != nil {
		return err
	}
	n, err := s.store.AddHostTag(ctx, db.AddHostTagParams{ID: h.ID, Tag: tag})
	if err != nil {
		return apierr.Internal(fmt.Errorf("add host tag: %w", err))
	}
	if n == 0 {
		return apierr.Conflict(fmt.Sprintf("host already has tag %q", tag))
	}
	return nil
}

// removeTag removes tag from host raw; a tag it does not have is 404.
func (s *Service) removeTag(ctx context.Context, caller auth.Identity, raw, tag string) error {
	h, _, err := s.manageableHost(ctx, caller, raw)
	if err != nil {
		return err
	}
	n, err := s.store.RemoveHostTag(ctx, db.RemoveHostTagParams{ID: h.ID, Tag: tag})
	if err != nil {
		return apierr.Internal(fmt.Errorf("remove host tag: %w", err))
	}
	if n == 0 {
		return apierr.NotFound(fmt.Sprintf("host has no tag %q", tag))
	}
	return nil
}

// checkTag validates a scheduling tag: 1–64 characters, no spaces or control characters.
func checkTag(tag string) error {
	n := utf8.RuneCountInString(tag)
	if n == 0 || n > maxTagLength || !utf8.ValidString(tag) || strings.IndexFunc(tag, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || r == '/'
	}) >= 0 {
		return apierr.InvalidRequestf("invalid tag %q: must be 1–%d characters without spaces, slashes or control characters", tag, maxTagLength)
	}
	return nil
}

// optionalText validates a free-text field; empty means absent.
func optionalText(field, v string) (*string, error) {
	if v == "" {
		return nil, nil
	}
	if utf8.RuneCountInString(v) > maxTextLength || !utf8.ValidString(v) || strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return nil, apierr.InvalidRequestf("invalid %s: must be at most %d characters without control characters", field, maxTextLength)
	}
	return &v, nil
}

// teamOf is the team a host's audit entries belong to: its BYOC team, else the platform team.
func teamOf(h db.Host) uuid.UUID {
	if h.TeamID != nil {
		return *h.TeamID
	}
	return store.PlatformTeamID
}

// userUUID returns the caller's user id, nil for non-users.
func userUUID(caller auth.Identity) *uuid.UUID {
	u, err := ids.User.Parse(caller.UserID)
	if err != nil {
		return nil
	}
	return &u
}
