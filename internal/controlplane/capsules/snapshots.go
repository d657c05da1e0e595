package capsules

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/audit"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// SnapshotTimeout bounds a snapshot capture, which runs to completion even if the client goes away.
const SnapshotTimeout = 5 * time.Minute

// hostCallTimeout bounds one agent call made for housekeeping (template file deletion).
const hostCallTimeout = 30 * time.Second

// templateName is the template name syntax of docs/api.md.
var templateName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$`)

// builtinTemplates are the platform images every agent builds; they cannot be deleted or replaced.
var builtinTemplates = []string{"base", "minimal"}

// snapshotName returns name, or a generated "template-" + 8 hex when it is empty; 400 when invalid.
func snapshotName(name string) (string, error) {
	if name == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		return "template-" + hex.EncodeToString(b[:]), nil
	}
	if !templateName.MatchString(name) {
		return "", apierr.InvalidRequest("invalid template name: 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	return name, nil
}

// ListTemplates returns team's templates and the platform's, optionally of one type (docs/api.md).
func (s *Service) ListTemplates(ctx context.Context, team uuid.UUID, typ string) ([]db.Template, error) {
	var filter *string
	switch typ {
	case "":
	case store.TemplateBase, store.TemplateSnapshot:
		filter = &typ
	default:
		return nil, apierr.InvalidRequestf("invalid type %q: use base or snapshot", typ)
	}
	ts, err := s.Store.ListTemplatesForTeam(ctx, db.ListTemplatesForTeamParams{TeamID: team, Type: filter})
	if err != nil {
		return nil, apierr.Internal(err)
	}
	return ts, nil
}

// ListAllTemplates returns every team's templates (admin).
func (s *Service) ListAllTemplates(ctx context.Context) ([]db.Template, error) {
	ts, err := s.Store.ListAllTemplates(ctx)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	return ts, nil
}

// Snapshot captures capsule rawID of team (running or paused) as a snapshot template of the team named
// name ("" = generated). A running capsule is paused first; it stays paused. A name of a platform
// template is 409 name_reserved, one of the team's templates 409 template_name_taken unless overwrite,
// which replaces that template.
func (s *Service) Snapshot(ctx context.Context, actor auth.Identity, team uuid.UUID, rawID, name string, overwrite bool) (db.Template, error) {
	name, err := snapshotName(name)
	if err != nil {
		return db.Template{}, err
	}
	if team == store.PlatformTeamID && slices.Contains(builtinTemplates, name) {
		return db.Template{}, apierr.Forbidden("the built-in template " + name + " cannot be replaced")
	}
	t, err := s.Resolve(ctx, team, rawID, store.CapsuleRunning, store.CapsulePaused)
	if err != nil {
		return db.Template{}, err
	}
	if team != store.PlatformTeamID {
		if _, err := s.Store.GetTemplate(ctx, db.GetTemplateParams{TeamID: store.PlatformTeamID, Name: name}); err == nil {
			return db.Template{}, apierr.NameReserved("template name " + name + " is reserved by a platform template")
		} else if !store.IsNotFound(err) {
			return db.Template{}, apierr.Internal(err)
		}
	}
	if !overwrite {
		if _, err := s.Store.GetTemplate(ctx, db.GetTemplateParams{TeamID: team, Name: name}); err == nil {
			return db.Template{}, apierr.TemplateNameTaken("the team already has a template named " + name + " (use overwrite=true to replace it)")
		} else if !store.IsNotFound(err) {
			return db.Template{}, apierr.Internal(err)
		}
	}
	return s.capture(ctx, actor, t, name, overwrite)
}

// SnapshotPlatform captures platform capsule rawID as the platform template name ("" = generated),
// replacing a platform template of that name, then destroys the capsule (admin).
func (s *Service) SnapshotPlatform(ctx context.Context, actor auth.Identity, rawID, name string) (db.Template, error) {
	tpl, err := s.Snapshot(ctx, actor, store.PlatformTeamID, rawID, name, true)
	if err != nil {
		return db.Template{}, err
	}
	bg := context.WithoutCancel(ctx)
	id, _ := ParseID(rawID)
	c, err := s.Store.GetCapsuleByID(bg, id)
	if err == nil {
		err = s.destroy(bg, actor, c, false)
	}
	if err != nil {
		s.Log.Error("destroy capsule after platform snapshot", "capsule_id", rawID, "template", tpl.Name, "err", err)
	}
	return tpl, nil
}

// capture pauses t if it runs, has its host write the template files and records the template
// (replacing the team's template of that name when replace). The work is not cancelled by the caller
// going away.
func (s *Service) capture(ctx context.Context, actor auth.Identity, t Target, name string, replace bool) (db.Template, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), SnapshotTimeout)
	defer cancel()
	c := t.Capsule
	if c.Status == store.CapsuleRunning {
		var err error
		if c, err = s.pauseForSnapshot(ctx, actor, t); err != nil {
			return db.Template{}, err
		}
	}
	log := s.Log.With("capsule_id", t.PublicID, "template", name)
	templateID := uuid.New()
	res, err := t.Agent.CreateSnapshot(ctx, connect.NewRequest(&hav1.CreateSnapshotRequest{
		SandboxId: t.PublicID, TeamId: c.TeamID.String(), TemplateId: templateID.String(),
	}))
	if err != nil {
		return db.Template{}, apierr.FromAgent(ctx, err)
	}
	vcpus, mem := c.VCPUs, c.MemoryMB
	var (
		tpl db.Template
		old *db.Template
	)
	err = s.Store.Tx(ctx, func(q *db.Queries) error {
		if replace {
			prev, err := q.DeleteTemplate(ctx, db.DeleteTemplateParams{TeamID: c.TeamID, Name: name})
			if err == nil {
				old = &prev
			} else if !store.IsNotFound(err) {
				return err
			}
		}
		var err error
		tpl, err = q.InsertTemplate(ctx, db.InsertTemplateParams{
			ID: templateID, TeamID: c.TeamID, Name: name, Type: store.TemplateSnapshot, VCPUs: &vcpus, MemoryMB: &mem,
			SizeBytes: res.Msg.GetSizeBytes(), DefaultUser: c.DefaultUser, DefaultEnv: c.DefaultEnv,
			Metadata: c.Metadata, CreatedBy: userOf(actor), HostID: c.HostID,
		})
		return err
	})
	if err != nil {
		// The files are of no use without their row.
		s.deleteTemplateFiles(ctx, db.Template{ID: templateID, TeamID: c.TeamID, Name: name, HostID: c.HostID})
		if store.IsUniqueViolation(err, "templates_team_id_name_key") {
			return db.Template{}, apierr.TemplateNameTaken("the team already has a template named " + name + " (use overwrite=true to replace it)")
		}
		return db.Template{}, apierr.Internal(fmt.Errorf("record template: %w", err))
	}
	if old != nil {
		s.deleteTemplateFiles(ctx, *old)
	}
	audit.Record(ctx, s.Store.Queries, audit.Entry{Team: c.TeamID, Actor: actor, ResourceType: "template",
		ResourceID: name, Action: "template.snapshot", Metadata: map[string]any{"capsule_id": t.PublicID}})
	log.Info("snapshot template created", "size_bytes", tpl.SizeBytes, "replaced", old != nil)
	return tpl, nil
}

// pauseForSnapshot pauses running capsule t before its capture. The capsule stays paused, so like a
// pause it needs room in its team's paused-disk quota (429 quota_exceeded, and it keeps running); a
// platform capsule is destroyed right after its capture and is not counted.
func (s *Service) pauseForSnapshot(ctx context.Context, actor auth.Identity, t Target) (db.Capsule, error) {
	if t.Capsule.TeamID == store.PlatformTeamID {
		c, _, err := s.pause(ctx, actor, t, s.Store.Queries)
		return c, err
	}
	var (
		c        db.Capsule
		unstored map[string][]*hav1.MetricPoint
	)
	err := s.withQuota(ctx, t.Capsule.TeamID, demand{pausedDiskMB: t.Capsule.DiskMB}, func(q *db.Queries) error {
		var err error
		c, unstored, err = s.pause(ctx, actor, t, q)
		return err
	})
	s.storeMetrics(ctx, t.Capsule, unstored)
	return c, err
}

// DeleteTemplate deletes team's template name from every host, then its row (docs/api.md). Platform templates
// are 403 here; team = the platform team (admin) deletes platform templates except the built-in images.
func (s *Service) DeleteTemplate(ctx context.Context, actor auth.Identity, team uuid.UUID, name string) error {
	if slices.Contains(builtinTemplates, name) {
		return apierr.Forbidden("the built-in template " + name + " cannot be deleted")
	}
	tpl, err := s.Store.GetTemplate(ctx, db.GetTemplateParams{TeamID: team, Name: name})
	if store.IsNotFound(err) && team != store.PlatformTeamID {
		if _, perr := s.Store.GetTemplate(ctx, db.GetTemplateParams{TeamID: store.PlatformTeamID, Name: name}); perr == nil {
			return apierr.Forbidden("platform templates cannot be deleted")
		}
	}
	if store.IsNotFound(err) {
		return apierr.NotFound("template not found")
	}
	if err != nil {
		return apierr.Internal(err)
	}
	bg := context.WithoutCancel(ctx)
	s.deleteTemplateFiles(bg, tpl)
	if _, err := s.Store.DeleteTemplate(bg, db.DeleteTemplateParams{TeamID: team, Name: name}); err != nil && !store.IsNotFound(err) {
		return apierr.Internal(fmt.Errorf("delete template: %w", err))
	}
	audit.Record(bg, s.Store.Queries, audit.Entry{Team: team, Actor: actor, ResourceType: "template",
		ResourceID: name, Action: "template.delete"})
	s.Log.Info("template deleted", "team_id", ids.Team.Format(team), "template", name)
	return nil
}

// deleteTemplateFiles removes tpl's files from every online host (hosts that never had them answer
// not found). Failures are logged: an unreachable host keeps the files of a deleted template.
func (s *Service) deleteTemplateFiles(ctx context.Context, tpl db.Template) {
	if isBuiltinImage(tpl) {
		return
	}
	hosts, err := s.Store.ListOnlineHosts(ctx)
	if err != nil {
		s.Log.Error("list hosts to delete template files", "template", tpl.Name, "err", err)
		return
	}
	for _, h := range hosts {
		hctx, cancel := context.WithTimeout(ctx, hostCallTimeout)
		agent, err := s.Agents.Agent(hctx, h.ID)
		if err == nil {
			_, err = agent.DeleteSnapshot(hctx, connect.NewRequest(&hav1.DeleteSnapshotRequest{
				TeamId: tpl.TeamID.String(), TemplateId: tpl.ID.String(),
			}))
		}
		cancel()
		if err != nil && !apierr.AgentNotFound(err) {
			s.Log.Warn("delete template files on host", "template", tpl.Name, "host_id", ids.Host.Format(h.ID), "err", err)
		}
	}
}

// userOf returns the user behind actor, nil for API keys and the system.
func userOf(actor auth.Identity) *uuid.UUID {
	if actor.Method != auth.MethodJWT {
		return nil
	}
	u, err := ids.User.Parse(actor.UserID)
	if err != nil {
		return nil
	}
	return &u
}

// DeleteTeamTemplates deletes every template of team from the hosts and the database (team deletion;
// capsules created from them keep working).
func (s *Service) DeleteTeamTemplates(ctx context.Context, team uuid.UUID) error {
	if team == store.PlatformTeamID {
		return apierr.Forbidden("platform templates cannot be deleted with their team")
	}
	ts, err := s.Store.ListTemplatesForTeam(ctx, db.ListTemplatesForTeamParams{TeamID: team})
	if err != nil {
		return fmt.Errorf("list team templates: %w", err)
	}
	for _, t := range ts {
		if t.TeamID == team {
			s.deleteTemplateFiles(ctx, t)
		}
	}
	if _, err := s.Store.DeleteTemplatesByTeam(ctx, team); err != nil {
		return fmt.Errorf("delete team templates: %w", err)
	}
	return nil
}
