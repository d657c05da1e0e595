package rpc

import (
	"context"
	"maps"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/hostagent/capsules"
)

// CreateSandbox boots a capsule from a base template or a snapshot template.
func (s *Server) CreateSandbox(ctx context.Context, req *connect.Request[v1.CreateSandboxRequest]) (*connect.Response[v1.CreateSandboxResponse], error) {
	m := req.Msg
	vcpus, mem, disk, err := resources(m.GetVcpus(), m.GetMemoryMb(), m.GetDiskSizeMb())
	if err := firstErr(
		checkSandboxID(m.GetSandboxId()), err, checkTimeout(m.GetTimeoutSec()),
		checkName("team_id", m.GetTeamId(), false), checkName("template_id", m.GetTemplateId(), false),
		checkUser("default_user", m.GetDefaultUser()), checkEnv("default_env", m.GetDefaultEnv()),
	); err != nil {
		return nil, err
	}
	info, err := s.agent.Create(ctx, capsules.CreateParams{
		ID: m.GetSandboxId(), VCPUs: vcpus, MemoryMB: mem, TimeoutSec: int(m.GetTimeoutSec()), DiskMB: disk,
		TeamID: m.GetTeamId(), TemplateID: m.GetTemplateId(), DefaultUser: m.GetDefaultUser(),
		DefaultEnv: maps.Clone(m.GetDefaultEnv()), AllowInternet: m.GetAllowInternet(),
		EnvdAccessToken: m.GetEnvdAccessToken(),
	})
	if err != nil {
		return nil, s.fail(ctx, "create", m.GetSandboxId(), err)
	}
	return connect.NewResponse(createResponse(info)), nil
}

// ResumeSandbox restores a paused capsule.
func (s *Server) ResumeSandbox(ctx context.Context, req *connect.Request[v1.ResumeSandboxRequest]) (*connect.Response[v1.CreateSandboxResponse], error) {
	m := req.Msg
	if err := firstErr(
		checkSandboxID(m.GetSandboxId()), checkTimeout(m.GetTimeoutSec()),
		checkUser("default_user", m.GetDefaultUser()), checkEnv("default_env", m.GetDefaultEnv()),
	); err != nil {
		return nil, err
	}
	info, err := s.agent.Resume(ctx, capsules.ResumeParams{
		ID: m.GetSandboxId(), TimeoutSec: int(m.GetTimeoutSec()),
		DefaultUser: m.GetDefaultUser(), DefaultEnv: maps.Clone(m.GetDefaultEnv()),
		EnvdAccessToken: m.GetEnvdAccessToken(),
	})
	if err != nil {
		return nil, s.fail(ctx, "resume", m.GetSandboxId(), err)
	}
	return connect.NewResponse(createResponse(info)), nil
}

func createResponse(info capsules.Info) *v1.CreateSandboxResponse {
	return &v1.CreateSandboxResponse{
		SandboxId: info.ID, Status: status(info.Status), HostIp: info.HostIP, Metadata: maps.Clone(info.Metadata),
	}
}

// status maps a capsule status to the wire; capsules in transition
// (creating, pausing, resuming) are UNSPECIFIED.
func status(st capsules.Status) v1.SandboxStatus {
	switch st {
	case capsules.StatusRunning:
		return v1.SandboxStatus_SANDBOX_STATUS_RUNNING
	case capsules.StatusPaused:
		return v1.SandboxStatus_SANDBOX_STATUS_PAUSED
	default:
		return v1.SandboxStatus_SANDBOX_STATUS_UNSPECIFIED
	}
}

// PauseSandbox snapshots a capsule and releases its resources.
func (s *Server) PauseSandbox(ctx context.Context, req *connect.Request[v1.PauseSandboxRequest]) (*connect.Response[v1.PauseSandboxResponse], error) {
	id := req.Msg.GetSandboxId()
	if err := checkSandboxID(id); err != nil {
		return nil, err
	}
	if err := s.agent.Pause(ctx, id); err != nil {
		return nil, s.fail(ctx, "pause", id, err)
	}
	return connect.NewResponse(&v1.PauseSandboxResponse{}), nil
}

// DestroySandbox tears a capsule down.
func (s *Server) DestroySandbox(ctx context.Context, req *connect.Request[v1.DestroySandboxRequest]) (*connect.Response[v1.DestroySandboxResponse], error) {
	id := req.Msg.GetSandboxId()
	if err := checkSandboxID(id); err != nil {
		return nil, err
	}
	if err := s.agent.Destroy(ctx, id); err != nil {
		return nil, s.fail(ctx, "destroy", id, err)
	}
	return connect.NewResponse(&v1.DestroySandboxResponse{}), nil
}

// PingSandbox resets a capsule's inactivity clock.
func (s *Server) PingSandbox(ctx context.Context, req *connect.Request[v1.PingSandboxRequest]) (*connect.Response[v1.PingSandboxResponse], error) {
	id := req.Msg.GetSandboxId()
	if err := checkSandboxID(id); err != nil {
		return nil, err
	}
	if err := s.agent.Ping(ctx, id); err != nil {
		return nil, s.fail(ctx, "ping", id, err)
	}
	return connect.NewResponse(&v1.PingSandboxResponse{}), nil
}

// ListSandboxes lists the capsules on this host and drains the ids of the
// ones paused for inactivity since the last call.
func (s *Server) ListSandboxes(ctx context.Context, _ *connect.Request[v1.ListSandboxesRequest]) (*connect.Response[v1.ListSandboxesResponse], error) {
	infos, auto, err := s.agent.List(ctx)
	if err != nil {
		return nil, s.fail(ctx, "list", "", err)
	}
	out := &v1.ListSandboxesResponse{
		Sandboxes:            make([]*v1.SandboxInfo, 0, len(infos)),
		AutoPausedSandboxIds: auto,
	}
	for _, in := range infos {
		si := &v1.SandboxInfo{
			SandboxId: in.ID, Status: status(in.Status), TemplateId: in.TemplateID, TeamId: in.TeamID,
			Vcpus: int32(in.VCPUs), MemoryMb: int32(in.MemoryMB), DiskSizeMb: int32(in.DiskMB),
			TimeoutSec: int32(in.TimeoutSec), HostIp: in.HostIP,
		}
		if !in.CreatedAt.IsZero() {
			si.CreatedAt = timestamppb.New(in.CreatedAt)
		}
		if !in.LastActiveAt.IsZero() {
			si.LastActiveAt = timestamppb.New(in.LastActiveAt)
		}
		out.Sandboxes = append(out.Sandboxes, si)
	}
	return connect.NewResponse(out), nil
}

// CreateSnapshot turns a capsule into a snapshot template.
func (s *Server) CreateSnapshot(ctx context.Context, req *connect.Request[v1.CreateSnapshotRequest]) (*connect.Response[v1.CreateSnapshotResponse], error) {
	return s.template(ctx, req.Msg, "snapshot", s.agent.Snapshot)
}

// FlattenRootfs writes a capsule's disk as a base template.
func (s *Server) FlattenRootfs(ctx context.Context, req *connect.Request[v1.CreateSnapshotRequest]) (*connect.Response[v1.CreateSnapshotResponse], error) {
	return s.template(ctx, req.Msg, "flatten", s.agent.Flatten)
}

func (s *Server) template(ctx context.Context, m *v1.CreateSnapshotRequest, op string,
	do func(ctx context.Context, id, teamID, templateID string) (int64, error),
) (*connect.Response[v1.CreateSnapshotResponse], error) {
	if err := firstErr(
		checkSandboxID(m.GetSandboxId()),
		checkName("team_id", m.GetTeamId(), false), checkName("template_id", m.GetTemplateId(), true),
	); err != nil {
		return nil, err
	}
	size, err := do(ctx, m.GetSandboxId(), m.GetTeamId(), m.GetTemplateId())
	if err != nil {
		return nil, s.fail(ctx, op, m.GetSandboxId(), err)
	}
	return connect.NewResponse(&v1.CreateSnapshotResponse{SizeBytes: size}), nil
}

// DeleteSnapshot deletes a template's files on this host.
func (s *Server) DeleteSnapshot(ctx context.Context, req *connect.Request[v1.DeleteSnapshotRequest]) (*connect.Response[v1.DeleteSnapshotResponse], error) {
	m := req.Msg
	if err := firstErr(
		checkName("team_id", m.GetTeamId(), false), checkName("template_id", m.GetTemplateId(), true),
	); err != nil {
		return nil, err
	}
	if err := s.agent.DeleteTemplate(ctx, m.GetTeamId(), m.GetTemplateId()); err != nil {
		return nil, s.fail(ctx, "delete template", "", err)
	}
	return connect.NewResponse(&v1.DeleteSnapshotResponse{}), nil
}

// GetSandboxMetrics returns one tier of a capsule's metrics.
func (s *Server) GetSandboxMetrics(ctx context.Context, req *connect.Request[v1.GetSandboxMetricsRequest]) (*connect.Response[v1.GetSandboxMetricsResponse], error) {
	id := req.Msg.GetSandboxId()
	if err := checkSandboxID(id); err != nil {
		return nil, err
	}
	var r capsules.MetricsRange
	switch req.Msg.GetRange() {
	case v1.MetricsRange_METRICS_RANGE_UNSPECIFIED, v1.MetricsRange_METRICS_RANGE_10M:
		r = capsules.Range10m
	case v1.MetricsRange_METRICS_RANGE_2H:
		r = capsules.Range2h
	case v1.MetricsRange_METRICS_RANGE_24H:
		r = capsules.Range24h
	default:
		return nil, invalid("unknown metrics range %d", req.Msg.GetRange())
	}
	pts, err := s.agent.Metrics(ctx, id, r)
	if err != nil {
		return nil, s.fail(ctx, "metrics", id, err)
	}
	return connect.NewResponse(&v1.GetSandboxMetricsResponse{Points: points(pts)}), nil
}

// FlushSandboxMetrics hands over every tier and stops sampling.
func (s *Server) FlushSandboxMetrics(ctx context.Context, req *connect.Request[v1.FlushSandboxMetricsRequest]) (*connect.Response[v1.FlushSandboxMetricsResponse], error) {
	id := req.Msg.GetSandboxId()
	if err := checkSandboxID(id); err != nil {
		return nil, err
	}
	tiers, err := s.agent.FlushMetrics(ctx, id)
	if err != nil {
		return nil, s.fail(ctx, "flush metrics", id, err)
	}
	return connect.NewResponse(&v1.FlushSandboxMetricsResponse{
		Points_10M: points(tiers[capsules.Range10m]),
		Points_2H:  points(tiers[capsules.Range2h]),
		Points_24H: points(tiers[capsules.Range24h]),
	}), nil
}

func points(in []capsules.MetricPoint) []*v1.MetricPoint {
	out := make([]*v1.MetricPoint, 0, len(in))
	for _, p := range in {
		out = append(out, &v1.MetricPoint{Ts: p.At.Unix(), CpuPct: p.CPUPct, MemBytes: p.MemBytes, DiskBytes: p.DiskBytes})
	}
	return out
}

// Terminate destroys every capsule on this host (host deletion).
func (s *Server) Terminate(ctx context.Context, _ *connect.Request[v1.TerminateRequest]) (*connect.Response[v1.TerminateResponse], error) {
	if err := s.agent.Terminate(ctx); err != nil {
		return nil, s.fail(ctx, "terminate", "", err)
	}
	return connect.NewResponse(&v1.TerminateResponse{}), nil
}

// ForkSandbox copies a running capsule into new running capsules.
func (s *Server) ForkSandbox(ctx context.Context, req *connect.Request[v1.ForkSandboxRequest]) (*connect.Response[v1.ForkSandboxResponse], error) {
	m := req.Msg
	if err := checkSandboxID(m.GetSandboxId()); err != nil {
		return nil, err
	}
	if n := len(m.GetTargets()); n < 1 || n > capsules.MaxForks {
		return nil, invalid("targets: want 1..%d, got %d", capsules.MaxForks, n)
	}
	targets := make([]capsules.ForkTarget, len(m.GetTargets()))
	for i, t := range m.GetTargets() {
		if err := checkSandboxID(t.GetSandboxId()); err != nil {
			return nil, err
		}
		targets[i] = capsules.ForkTarget{ID: t.GetSandboxId(), EnvdAccessToken: t.GetEnvdAccessToken()}
	}
	infos, err := s.agent.Fork(ctx, m.GetSandboxId(), targets)
	if err != nil {
		return nil, s.fail(ctx, "fork", m.GetSandboxId(), err)
	}
	res := &v1.ForkSandboxResponse{}
	for _, in := range infos {
		res.Sandboxes = append(res.Sandboxes, createResponse(in))
	}
	return connect.NewResponse(res), nil
}

// SetTemplatePool sets the warm pool of a template on this host, as the
// control plane's (docs/agent.md, "Warm pools"): size 0 gives the template
// back to the agent's -pool flag.
func (s *Server) SetTemplatePool(ctx context.Context, req *connect.Request[v1.SetTemplatePoolRequest]) (*connect.Response[v1.SetTemplatePoolResponse], error) {
	m := req.Msg
	if err := firstErr(
		checkName("team_id", m.GetTeamId(), false), checkName("template_id", m.GetTemplateId(), true),
	); err != nil {
		return nil, err
	}
	if m.GetSize() < 0 || m.GetSize() > capsules.MaxPoolSize {
		return nil, invalid("size %d out of range 0-%d", m.GetSize(), capsules.MaxPoolSize)
	}
	spec := capsules.PoolSpec{TeamID: m.GetTeamId(), TemplateID: m.GetTemplateId(), Size: int(m.GetSize()), AllowInternet: m.GetAllowInternet()}
	if m.GetVcpus() != 0 || m.GetMemoryMb() != 0 || m.GetDiskSizeMb() != 0 {
		v, mem, disk, err := resources(m.GetVcpus(), m.GetMemoryMb(), m.GetDiskSizeMb())
		if err != nil {
			return nil, err
		}
		spec.VCPUs, spec.MemoryMB, spec.DiskMB = v, mem, disk
		if m.GetDiskSizeMb() == 0 {
			spec.DiskMB = 0 // the pool's default
		}
	}
	if err := s.agent.SetNamedPool(ctx, spec); err != nil {
		return nil, s.fail(ctx, "set pool", "", err)
	}
	ready := 0
	for _, p := range s.agent.Pools() {
		if p.TeamID == spec.TeamID && p.TemplateID == spec.TemplateID {
			ready = p.Ready
		}
	}
	return connect.NewResponse(&v1.SetTemplatePoolResponse{Ready: int32(ready)}), nil
}
