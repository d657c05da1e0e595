package capsules

import (
	"context"
	"fmt"
	"net/http"

	"connectrpc.com/connect"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/audit"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// MaxPoolSize bounds a template's warm pool on each host (docs/api.md, "Warm pools").
const MaxPoolSize = 64

// Pool is a template's warm pool in the template JSON: its size per host and, in the answer of
// PUT /v1/admin/templates/{name}/pool, how many capsules the hosts had ready at that moment.
type Pool struct {
	Size  int32  `json:"size"`
	Ready *int32 `json:"ready,omitempty"`
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
// Agents that cannot be reached are logged; the answer carries the capsules the reached ones have ready.
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
	v.Pool.Ready = &ready
	return v, nil
}

// poolRequestOf is the SetTemplatePool call of tpl: the shape of the control plane's default creates
// (a snapshot template's own vCPUs and memory).
func poolRequestOf(tpl db.Template) *hav1.SetTemplatePoolRequest {
	req := &hav1.SetTemplatePoolRequest{Size: tpl.PoolSize, Vcpus: DefaultVCPUs, MemoryMb: DefaultMemoryMB,
		DiskSizeMb: DiskMB, AllowInternet: true, TemplateId: tpl.Name}
	if !isBuiltinImage(tpl) {
		req.TeamId, req.TemplateId = tpl.TeamID.String(), tpl.ID.String()
		if tpl.VCPUs != nil && tpl.MemoryMB != nil {
			req.Vcpus, req.MemoryMb = *tpl.VCPUs, *tpl.MemoryMB
		}
	}
	return req
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
