package capsules

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"connectrpc.com/connect"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/audit"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/fleet"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// MaxPoolSize bounds a template's warm pool on each host (docs/api.md, "Warm pools").
const MaxPoolSize = 64

// Pool is a template's warm pool in the template JSON: its size per host and how many capsules the
// online hosts have ready, from their latest pool reports (docs/api.md, "Warm pools").
type Pool struct {
	Size  int32 `json:"size"`
	Ready int32 `json:"ready"`
}

type poolRequest struct {
	Size *int32 `json:"size"`
}

func (s *Service) handleSetPool(w http.ResponseWriter, r *http.Request) {
	var req poolRequest
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	if req.Size == nil {
		apierr.Write(w, r, apierr.InvalidRequest("size is required"))
		return
	}
	v, err := s.SetPool(r.Context(), httpapi.Identity(r), r.PathValue("name"), *req.Size)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, v)
}

// SetPool sets the warm pool size of a platform template, stores it and tells the agents that hold
// it: every online regular host for the built-in images, the template's host for a snapshot template.
// Agents that cannot be reached are logged (they get the pool with their next heartbeat's answer); the
// answer's ready is what the reached ones have ready now.
func (s *Service) SetPool(ctx context.Context, actor auth.Identity, name string, size int32) (Template, error) {
	if size < 0 || size > MaxPoolSize {
		return Template{}, apierr.InvalidRequestf("size must be 0..%d", MaxPoolSize)
	}
	tpl, err := s.Store.SetTemplatePoolSize(ctx, db.SetTemplatePoolSizeParams{TeamID: store.PlatformTeamID, Name: name, PoolSize: size})
	if store.IsNotFound(err) {
		return Template{}, apierr.NotFound("template not found")
	}
	if err != nil {
		return Template{}, apierr.Internal(fmt.Errorf("set pool size: %w", err))
	}
	bg := context.WithoutCancel(ctx)
	audit.Record(bg, s.Store.Queries, audit.Entry{Team: store.PlatformTeamID, Actor: actor, ResourceType: "template",
		ResourceID: name, Action: "template.pool", Scope: audit.ScopeAdmin, Metadata: map[string]any{"size": size}})
	ready := s.pushPool(bg, tpl)
	v := TemplateView(tpl, true)
	v.Pool.Ready = ready
	return v, nil
}

// DesiredPool is the warm pool a host keeps of tpl, in the shape of the control plane's default
// creates (a snapshot template's own vCPUs and memory), keyed as the agent keys it: the built-in images
// by name, other templates by their team's and their own id. Heartbeat answers (fleet.Config.Pool) and
// PUT's immediate push both use it.
func DesiredPool(tpl db.Template) fleet.DesiredPool {
	team, id := poolKey(tpl)
	d := fleet.DesiredPool{Name: tpl.Name, Size: tpl.PoolSize, PoolShape: fleet.PoolShape{
		TeamID: team, Template: id, VCPUs: DefaultVCPUs, MemoryMB: DefaultMemoryMB, DiskMB: DiskMB, AllowInternet: true,
	}}
	if !isBuiltinImage(tpl) && tpl.VCPUs != nil && tpl.MemoryMB != nil {
		d.VCPUs, d.MemoryMB = *tpl.VCPUs, *tpl.MemoryMB
	}
	return d
}

// poolKey is the agent's key of tpl's pool: ("", name) for the built-in images, else the team's and
// the template's ids.
func poolKey(tpl db.Template) (team, template string) {
	if isBuiltinImage(tpl) {
		return "", tpl.Name
	}
	return tpl.TeamID.String(), tpl.ID.String()
}

// poolRequestOf is the SetTemplatePool call of tpl (DesiredPool).
func poolRequestOf(tpl db.Template) *hav1.SetTemplatePoolRequest {
	d := DesiredPool(tpl)
	return &hav1.SetTemplatePoolRequest{Size: d.Size, Vcpus: d.VCPUs, MemoryMb: d.MemoryMB,
		DiskSizeMb: d.DiskMB, AllowInternet: d.AllowInternet, TeamId: d.TeamID, TemplateId: d.Template}
}

// poolReady returns the ready members per pool key ([team, template] as poolKey) over the online hosts'
// fresh pool reports. A failure is logged and reads as none ready: the listing does not fail for it.
func (s *Service) poolReady(ctx context.Context) map[[2]string]int32 {
	rows, err := s.Store.SumReadyPools(ctx, time.Now().Add(-s.poolReportMaxAge))
	if err != nil {
		s.Log.Error("read warm pool reports", "err", err)
		return nil
	}
	out := make(map[[2]string]int32, len(rows))
	for _, r := range rows {
		out[[2]string{r.TeamID, r.TemplateID}] = r.Ready
	}
	return out
}

// templateViews renders ts with their pools' ready members.
func (s *Service) templateViews(ctx context.Context, ts []db.Template, withTeam bool) []Template {
	ready := s.poolReady(ctx)
	out := make([]Template, 0, len(ts))
	for _, t := range ts {
		v := TemplateView(t, withTeam)
		team, id := poolKey(t)
		v.Pool.Ready = ready[[2]string{team, id}]
		out = append(out, v)
	}
	return out
}

// templateView is templateViews of one template.
func (s *Service) templateView(ctx context.Context, t db.Template, withTeam bool) Template {
	return s.templateViews(ctx, []db.Template{t}, withTeam)[0]
}

// pushPool sends tpl's pool to the agents holding it and returns their ready capsules.
func (s *Service) pushPool(ctx context.Context, tpl db.Template) int32 {
	hosts, err := s.Store.ListOnlineHosts(ctx)
	if err != nil {
		s.Log.Error("list hosts to set a template pool", "template", tpl.Name, "err", err)
		return 0
	}
	req := poolRequestOf(tpl)
	var ready int32
	for _, h := range hosts {
		if (tpl.HostID != nil && h.ID != *tpl.HostID) || (tpl.HostID == nil && h.Type != store.HostRegular) {
			continue
		}
		hctx, cancel := context.WithTimeout(ctx, hostCallTimeout)
		agent, err := s.Agents.Agent(hctx, h.ID)
		if err == nil {
			var res *connect.Response[hav1.SetTemplatePoolResponse]
			if res, err = agent.SetTemplatePool(hctx, connect.NewRequest(req)); err == nil {
				ready += res.Msg.GetReady()
			}
		}
		cancel()
		if err != nil {
			s.Log.Warn("set template pool on host", "template", tpl.Name, "host_id", ids.Host.Format(h.ID), "err", err)
		}
	}
	return ready
}
