package capsules

import (
	"context"
	"fmt"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/audit"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// BuildCapture is what a template build stores from its build capsule (docs/api.md, "Template builds").
type BuildCapture struct {
	CapsuleID string // cl-…, a platform capsule
	Name      string // the platform template it becomes (an existing one of that name is replaced)
	// Memory captures memory + CPU + disk (a snapshot template, started processes keep running);
	// otherwise the disk is flattened into a base template.
	Memory      bool
	DefaultUser string
	DefaultEnv  map[string]string
	CreatedBy   *uuid.UUID
}

// CaptureBuild turns a build capsule into a platform template with the build's defaults, replacing a
// platform template of that name, then destroys the capsule. The work is not cancelled by ctx ending.
func (s *Service) CaptureBuild(ctx context.Context, actor auth.Identity, b BuildCapture) (db.Template, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), SnapshotTimeout)
	defer cancel()
	t, err := s.Resolve(ctx, store.PlatformTeamID, b.CapsuleID, store.CapsuleRunning)
	if err != nil {
		return db.Template{}, err
	}
	c := t.Capsule
	defer func() {
		if err := s.destroy(ctx, actor, c, false); err != nil {
			s.Log.Warn("destroy build capsule after capture", "capsule_id", b.CapsuleID, "err", err)
		}
	}()
	templateID := uuid.New()
	req := connect.NewRequest(&hav1.CreateSnapshotRequest{
		SandboxId: t.PublicID, TeamId: c.TeamID.String(), TemplateId: templateID.String(),
	})
	typ := store.TemplateBase
	var (
		res        *connect.Response[hav1.CreateSnapshotResponse]
		vcpus, mem *int32
	)
	if b.Memory {
		typ, vcpus, mem = store.TemplateSnapshot, &c.VCPUs, &c.MemoryMB
		if c, _, err = s.pause(ctx, actor, t, s.Store.Queries); err != nil {
			return db.Template{}, err
		}
		res, err = t.Agent.CreateSnapshot(ctx, req)
	} else {
		res, err = t.Agent.FlattenRootfs(ctx, req)
	}
	if err != nil {
		return db.Template{}, apierr.FromAgent(ctx, err)
	}
	var (
		tpl db.Template
		old *db.Template
	)
	err = s.Store.Tx(ctx, func(q *db.Queries) error {
		prev, err := q.DeleteTemplate(ctx, db.DeleteTemplateParams{TeamID: store.PlatformTeamID, Name: b.Name})
		if err == nil {
			old = &prev
		} else if !store.IsNotFound(err) {
			return err
		}
		tpl, err = q.InsertTemplate(ctx, db.InsertTemplateParams{
			ID: templateID, TeamID: store.PlatformTeamID, Name: b.Name, Type: typ, VCPUs: vcpus, MemoryMB: mem,
			SizeBytes: res.Msg.GetSizeBytes(), DefaultUser: b.DefaultUser, DefaultEnv: b.DefaultEnv,
			Metadata: c.Metadata, CreatedBy: b.CreatedBy, HostID: c.HostID,
		})
		return err
	})
	if err != nil {
		s.deleteTemplateFiles(ctx, db.Template{ID: templateID, TeamID: store.PlatformTeamID, Name: b.Name, HostID: c.HostID})
		return db.Template{}, apierr.Internal(fmt.Errorf("record template: %w", err))
	}
	if old != nil {
		s.deleteTemplateFiles(ctx, *old)
	}
	audit.Record(ctx, s.Store.Queries, audit.Entry{Team: store.PlatformTeamID, Actor: actor, ResourceType: "template",
		ResourceID: b.Name, Action: "template.build", Metadata: map[string]any{"capsule_id": t.PublicID}})
	s.Log.Info("build template created", "template", b.Name, "type", typ, "size_bytes", tpl.SizeBytes)
	return tpl, nil
}

// DestroyPlatform destroys platform capsule id, whatever its state (build teardown); an unknown or
// already stopped capsule is not an error.
func (s *Service) DestroyPlatform(ctx context.Context, actor auth.Identity, id uuid.UUID) error {
	c, err := s.Store.GetCapsuleByID(ctx, id)
	if store.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return apierr.Internal(err)
	}
	if c.TeamID != store.PlatformTeamID || c.Status == store.CapsuleStopped {
		return nil
	}
	return s.destroy(ctx, actor, c, false)
}
