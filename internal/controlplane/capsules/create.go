package capsules

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/api/hostagent/hostagent/v1/hostagentv1connect"
	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/audit"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/fleet"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Creation defaults and limits (docs/api.md).
const (
	DefaultTemplate = "base"
	DefaultVCPUs    = 1
	DefaultMemoryMB = 512
	MinMemoryMB     = 128
	DiskMB          = 5120
)

// createRetryWindow is how long a create keeps placing a capsule whose host's agent did not take the
// call (connection refused, agent restarting) before it answers 503.
const createRetryWindow = 30 * time.Second

// minimalTemplateID is the platform "minimal" image template (migration 00002).
var minimalTemplateID = uuid.MustParse("00000000-0000-0000-0000-000000000002")

// CreateParams are the settings of a new capsule; zero values are not defaults (see createRequest).
type CreateParams struct {
	Template      string
	VCPUs         int32
	MemoryMB      int32
	TimeoutSec    int32
	AllowInternet bool
	// Secure: every proxied port needs the capsule's traffic access token (docs/security.md).
	Secure bool
	// Env is added to the template's default environment, overriding it key by key; like the template's
	// it is applied again on every resume (E2B envVars, docs/e2b.md).
	Env map[string]string
	// FallbackUser, when set, replaces a template default user that no build chose (the schema's
	// "root"): the E2B-compatible API's "user" (docs/e2b.md).
	FallbackUser string
}

// templateUserUnset is the default_user of a template no build gave one (the schema default).
const templateUserUnset = "root"

// defaults returns the default user and environment a capsule starts or resumes with: its template's,
// with the capsule's own env vars over them key by key and its fallback user in place of a user no build
// chose (docs/e2b.md).
func defaults(tplUser string, tplEnv map[string]string, env map[string]string, fallback string) (string, map[string]string) {
	user := tplUser
	if fallback != "" && (user == "" || user == templateUserUnset) {
		user = fallback
	}
	if len(env) == 0 {
		return user, tplEnv
	}
	merged := make(map[string]string, len(tplEnv)+len(env))
	maps.Copy(merged, tplEnv)
	maps.Copy(merged, env)
	return user, merged
}

// createRequest is the body of POST /v1/capsules; omitted fields take docs/api.md defaults.
type createRequest struct {
	Template      *string `json:"template"`
	VCPUs         *int32  `json:"vcpus"`
	MemoryMB      *int32  `json:"memory_mb"`
	TimeoutSec    *int32  `json:"timeout_sec"`
	AllowInternet *bool   `json:"allow_internet"`
	Secure        *bool   `json:"secure"`
}

func (r createRequest) params() CreateParams {
	p := CreateParams{Template: DefaultTemplate, VCPUs: DefaultVCPUs, MemoryMB: DefaultMemoryMB, AllowInternet: true}
	if r.Template != nil && *r.Template != "" {
		p.Template = *r.Template
	}
	if r.VCPUs != nil {
		p.VCPUs = *r.VCPUs
	}
	if r.MemoryMB != nil {
		p.MemoryMB = *r.MemoryMB
	}
	if r.TimeoutSec != nil {
		p.TimeoutSec = *r.TimeoutSec
	}
	if r.AllowInternet != nil {
		p.AllowInternet = *r.AllowInternet
	}
	if r.Secure != nil {
		p.Secure = *r.Secure
	}
	return p
}

// Validate checks docs/api.md bounds.
func (p CreateParams) Validate() error {
	switch {
	case p.VCPUs < 1:
		return apierr.InvalidRequest("vcpus must be at least 1")
	case p.MemoryMB < MinMemoryMB:
		return apierr.InvalidRequestf("memory_mb must be at least %d", MinMemoryMB)
	case p.TimeoutSec < 0:
		return apierr.InvalidRequest("timeout_sec must not be negative")
	}
	for k := range p.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return apierr.InvalidRequestf("invalid environment variable name %q", k)
		}
	}
	return nil
}

// Create places and boots a capsule of team from a template (docs/api.md): the row is inserted pending, the
// host agent creates it, and the row becomes running (or error with the mapped agent error).
func (s *Service) Create(ctx context.Context, actor auth.Identity, team uuid.UUID, p CreateParams) (db.Capsule, error) {
	if err := p.Validate(); err != nil {
		return db.Capsule{}, err
	}
	tpl, err := s.Store.ResolveTemplate(ctx, db.ResolveTemplateParams{Name: p.Template, TeamID: team})
	if store.IsNotFound(err) {
		return db.Capsule{}, apierr.NotFound("template not found")
	}
	if err != nil {
		return db.Capsule{}, apierr.Internal(err)
	}
	if tpl.Type == store.TemplateSnapshot && tpl.VCPUs != nil && tpl.MemoryMB != nil {
		// The capsule resumes the captured memory: its size is the template's.
		p.VCPUs, p.MemoryMB = *tpl.VCPUs, *tpl.MemoryMB
	}
	need := demand{capsules: 1, vcpus: p.VCPUs, memoryMB: p.MemoryMB}
	// A first check before placing answers an over-quota team without waiting for a host; the one
	// that counts is made again with the insert below.
	if err := s.checkQuota(ctx, s.Store.Queries, team, need); err != nil {
		return db.Capsule{}, err
	}
	host, err := s.place(ctx, team, tpl, p)
	if err != nil {
		return db.Capsule{}, err
	}
	user, env := defaults(tpl.DefaultUser, tpl.DefaultEnv, p.Env, p.FallbackUser)
	id := uuid.New()
	token, err := newEnvdToken()
	if err != nil {
		return db.Capsule{}, apierr.Internal(err)
	}
	sealed, err := s.sealEnvdToken(id, token)
	if err != nil {
		return db.Capsule{}, apierr.Internal(err)
	}
	var sealedTraffic []byte
	if p.Secure {
		if sealedTraffic, err = s.newTrafficToken(id); err != nil {
			return db.Capsule{}, apierr.Internal(err)
		}
	}
	var c db.Capsule
	err = s.withQuota(ctx, team, need, func(q *db.Queries) error {
		var err error
		c, err = q.CreateCapsule(ctx, db.CreateCapsuleParams{
			ID: &id, EnvdToken: sealed, TeamID: team, TemplateID: &tpl.ID, TemplateName: tpl.Name, HostID: &host.ID,
			VCPUs: p.VCPUs, MemoryMB: p.MemoryMB, DiskMB: DiskMB, TimeoutSec: p.TimeoutSec,
			AllowInternet: p.AllowInternet, DefaultUser: user, DefaultEnv: env,
			Secure: p.Secure, TrafficToken: sealedTraffic, EnvVars: p.Env, FallbackUser: optional(p.FallbackUser),
		})
		if err != nil {
			return apierr.Internal(fmt.Errorf("insert capsule: %w", err))
		}
		return nil
	})
	if err != nil {
		return db.Capsule{}, err
	}
	publicID := ids.Capsule.Format(c.ID)
	log := s.Log.With("capsule_id", publicID, "host_id", ids.Host.Format(host.ID), "template", tpl.Name)
	entry := audit.Entry{Team: team, Actor: actor, ResourceType: "capsule", ResourceID: publicID,
		Action: "capsule.create", Metadata: map[string]any{"template": tpl.Name}}

	// From here the row must not stay pending whatever happens to the request.
	bg := context.WithoutCancel(ctx)
	fail := func(err error) (db.Capsule, error) {
		if _, merr := s.Store.MarkCapsuleError(bg, c.ID); merr != nil && !store.IsNotFound(merr) {
			log.Error("record failed capsule creation", "err", merr)
		}
		entry.Failed = true
		audit.Record(bg, s.Store.Queries, entry)
		log.Warn("capsule creation failed", "err", err)
		return db.Capsule{}, err
	}
	teamArg, templateArg := agentTemplate(tpl, team)
	req := &hav1.CreateSandboxRequest{
		SandboxId: publicID, Vcpus: p.VCPUs, MemoryMb: p.MemoryMB, TimeoutSec: p.TimeoutSec,
		DiskSizeMb: DiskMB, TeamId: teamArg, TemplateId: templateArg,
		DefaultUser: user, DefaultEnv: env, AllowInternet: p.AllowInternet,
		EnvdAccessToken: token,
	}
	// A host's agent may not take the call (it is restarting, or went away since its last heartbeat):
	// such a call changed nothing, so the capsule goes to another host that fits, or to the same one
	// again a moment later, until createRetryWindow has passed.
	var (
		res      *connect.Response[hav1.CreateSandboxResponse]
		avoid    []uuid.UUID
		deadline = time.Now().Add(createRetryWindow)
		backoff  = 100 * time.Millisecond
	)
	for {
		res, err = s.createOn(ctx, host, req)
		if err == nil {
			break
		}
		if !fleet.Undelivered(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return fail(apierr.FromAgent(ctx, err))
		}
		log.Warn("host did not take the capsule; placing it again", "err", err)
		avoid = append(avoid, host.ID)
		next, perr := s.placeAgain(ctx, team, tpl, p, avoid)
		if perr != nil {
			// No other host: the same one again after a pause.
			next = host
			select {
			case <-ctx.Done():
				return fail(apierr.FromAgent(ctx, err))
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			avoid = avoid[:0]
		}
		if next.ID != host.ID {
			if n, merr := s.Store.MoveCapsuleHost(ctx, db.MoveCapsuleHostParams{ID: c.ID, HostID: &next.ID}); merr != nil || n == 0 {
				if merr == nil {
					return db.Capsule{}, apierr.InvalidState("sandbox was destroyed while it was being created")
				}
				return fail(apierr.Internal(fmt.Errorf("move capsule to host %s: %w", ids.Host.Format(next.ID), merr)))
			}
			log = s.Log.With("capsule_id", publicID, "host_id", ids.Host.Format(next.ID), "template", tpl.Name)
		}
		host = next
	}
	c, err = s.withAudit(bg, entry, func() (db.Capsule, error) {
		return s.Store.SetCapsuleRunning(bg, db.SetCapsuleRunningParams{
			HostID: &host.ID, HostIP: parseIP(res.Msg.GetHostIp()), Metadata: res.Msg.GetMetadata(),
			ID: c.ID, FromStatuses: []string{store.CapsulePending},
		})
	})
	if store.IsNotFound(err) {
		// Destroyed (or reconciled away) while it was being created.
		return db.Capsule{}, apierr.InvalidState("sandbox was destroyed while it was being created")
	}
	if err != nil {
		return db.Capsule{}, apierr.Internal(fmt.Errorf("record running capsule: %w", err))
	}
	log.Info("capsule created")
	return c, nil
}

// place picks the host of a new capsule of p: the host holding a snapshot template's files (checked
// for memory and disk headroom by a HostScheduler, fleet's), else the scheduler's choice (pick).
func (s *Service) place(ctx context.Context, team uuid.UUID, tpl db.Template, p CreateParams) (db.Host, error) {
	memoryMB := p.MemoryMB
	if tpl.HostID == nil {
		return s.pick(ctx, team, tpl, p, nil)
	}
	if hs, ok := s.sched.(HostScheduler); ok {
		return hs.PickHost(ctx, *tpl.HostID, team, memoryMB, DiskMB)
	}
	h, err := s.Store.GetHost(ctx, *tpl.HostID)
	if err != nil && !store.IsNotFound(err) {
		return db.Host{}, apierr.Internal(err)
	}
	if err != nil || h.Status != store.HostOnline || h.Address == nil {
		return db.Host{}, apierr.NoCapacity("the host holding template " + tpl.Name + " is not available")
	}
	return h, nil
}

// createOn sends the create call to host's agent.
func (s *Service) createOn(ctx context.Context, host db.Host, req *hav1.CreateSandboxRequest) (*connect.Response[hav1.CreateSandboxResponse], error) {
	var (
		agent hostagentv1connect.HostAgentServiceClient
		err   error
	)
	if fast, ok := s.Agents.(fleet.HostAgents); ok {
		agent, err = fast.AgentOf(host.ID, host.Status, host.Address)
	} else {
		agent, err = s.Agents.Agent(ctx, host.ID)
	}
	if err != nil {
		return nil, err
	}
	return agent.CreateSandbox(ctx, connect.NewRequest(req))
}

// placeAgain picks another host for a capsule whose host did not take it, avoiding the hosts that
// failed. A template whose files live on one host has no other.
func (s *Service) placeAgain(ctx context.Context, team uuid.UUID, tpl db.Template, p CreateParams, avoid []uuid.UUID) (db.Host, error) {
	if tpl.HostID != nil {
		return db.Host{}, apierr.NoCapacity("the template's files are on one host")
	}
	return s.pick(ctx, team, tpl, p, avoid)
}

// pick asks the scheduler for a host of a capsule of p from tpl. When the capsule has the shape of
// tpl's warm pool (DesiredPool) and the scheduler knows pools (a PoolScheduler), a host with a ready
// member of that pool comes first, so the create takes it (docs/api.md, "Warm pools"); an agent's own
// -pool flag pools have the same default shape.
func (s *Service) pick(ctx context.Context, team uuid.UUID, tpl db.Template, p CreateParams, avoid []uuid.UUID) (db.Host, error) {
	if ps, ok := s.sched.(PoolScheduler); ok {
		if d := DesiredPool(tpl); p.VCPUs == d.VCPUs && p.MemoryMB == d.MemoryMB && p.AllowInternet == d.AllowInternet {
			return ps.PickPooled(ctx, team, d.PoolShape, p.MemoryMB, DiskMB, avoid...)
		}
	}
	return s.sched.Pick(ctx, team, p.MemoryMB, DiskMB, avoid...)
}

// agentTemplate returns the team_id and template_id CreateSandbox gets for tpl: the built-in platform
// images go by name (every agent builds them); other templates by id, under the team that owns their
// files on the host (a platform snapshot used by another team lives under the platform team).
func agentTemplate(tpl db.Template, team uuid.UUID) (teamID, templateID string) {
	if isBuiltinImage(tpl) {
		return team.String(), tpl.Name
	}
	return tpl.TeamID.String(), tpl.ID.String()
}

// isBuiltinImage reports whether tpl is one of the platform images "base" and "minimal".
func isBuiltinImage(tpl db.Template) bool {
	return tpl.ID == store.BaseTemplateID || tpl.ID == minimalTemplateID
}

func parseIP(s string) *netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return nil
	}
	return &a
}

// withAudit runs record (the row update that completes an action) and writes entry at the same time:
// two PostgreSQL round trips in the time of one on the request's path. Both are done when it returns.
func (s *Service) withAudit(ctx context.Context, entry audit.Entry, record func() (db.Capsule, error)) (db.Capsule, error) {
	return s.withAuditOn(ctx, s.Store.Queries, entry, record)
}

// withAuditOn is withAudit writing entry through q. A q other than the pool's is one connection (a
// transaction): record runs first, then entry is written.
func (s *Service) withAuditOn(ctx context.Context, q *db.Queries, entry audit.Entry, record func() (db.Capsule, error)) (db.Capsule, error) {
	if q != s.Store.Queries {
		c, err := record()
		audit.Record(ctx, q, entry)
		return c, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		audit.Record(ctx, s.Store.Queries, entry)
	}()
	c, err := record()
	<-done
	return c, err
}

// optional is s as a nullable column: nil when empty.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
