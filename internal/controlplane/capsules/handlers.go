package capsules

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Register adds the capsule, snapshot and admin capsule/template routes to rt (docs/api.md,
// docs/api.md). Capsule routes are served under /v1/capsules and /v1/sandboxes.
func (s *Service) Register(rt *httpapi.Router) {
	team := teamRoute
	rt.HandleCapsule(http.MethodPost, "", auth.KindKeyOrJWT, s.handleCreate(team))
	rt.HandleCapsule(http.MethodGet, "", auth.KindKeyOrJWT, s.handleList(team))
	rt.HandleCapsule(http.MethodGet, "/stats", auth.KindKeyOrJWT, s.handleStats)
	rt.HandleCapsule(http.MethodGet, "/{id}", auth.KindKeyOrJWT, s.handleGet(team))
	rt.HandleCapsule(http.MethodDelete, "/{id}", auth.KindKeyOrJWT, s.handleDestroy(team))
	rt.HandleCapsule(http.MethodPost, "/{id}/ping", auth.KindKeyOrJWT, s.handlePing)
	rt.HandleCapsule(http.MethodPost, "/{id}/pause", auth.KindKeyOrJWT, s.handlePause)
	rt.HandleCapsule(http.MethodPost, "/{id}/resume", auth.KindKeyOrJWT, s.handleResume)
	rt.HandleCapsule(http.MethodPost, "/{id}/fork", auth.KindKeyOrJWT, s.handleFork)
	rt.HandleCapsule(http.MethodGet, "/{id}/metrics", auth.KindKeyOrJWT, s.handleMetrics(team))

	rt.Handle(http.MethodPost, "/v1/snapshots", auth.KindKeyOrJWT, s.handleSnapshot)
	rt.Handle(http.MethodGet, "/v1/snapshots", auth.KindKeyOrJWT, s.handleListTemplates)
	rt.Handle(http.MethodDelete, "/v1/snapshots/{name}", auth.KindKeyOrJWT, s.handleDeleteTemplate(team))

	rt.Handle(http.MethodGet, "/v1/teams/{id}/quotas", auth.KindJWT, s.handleTeamQuota)
	rt.Handle(http.MethodGet, "/v1/admin/teams/{id}/quotas", auth.KindAdmin, s.handleAdminTeamQuota)
	rt.Handle(http.MethodPut, "/v1/admin/teams/{id}/quotas", auth.KindAdmin, s.handleAdminSetTeamQuota)

	admin := platformRoute
	rt.Handle(http.MethodGet, "/v1/admin/templates", auth.KindAdmin, s.handleListAllTemplates)
	rt.Handle(http.MethodDelete, "/v1/admin/templates/{name}", auth.KindAdmin, s.handleDeleteTemplate(admin))
	rt.Handle(http.MethodPut, "/v1/admin/templates/{name}/pool", auth.KindAdmin, s.handleSetPool)
	rt.Handle(http.MethodPost, "/v1/admin/capsules", auth.KindAdmin, s.handleCreate(admin))
	rt.Handle(http.MethodGet, "/v1/admin/capsules", auth.KindAdmin, s.handleList(admin))
	rt.Handle(http.MethodGet, "/v1/admin/capsules/{id}", auth.KindAdmin, s.handleGet(admin))
	rt.Handle(http.MethodDelete, "/v1/admin/capsules/{id}", auth.KindAdmin, s.handleDestroy(admin))
	rt.Handle(http.MethodPost, "/v1/admin/capsules/{id}/snapshot", auth.KindAdmin, s.handleAdminSnapshot)
	rt.Handle(http.MethodGet, "/v1/admin/capsules/{id}/metrics", auth.KindAdmin, s.handleMetrics(platformRoute))
}

// teamOfRequest returns the team a request acts for.
type teamOfRequest func(r *http.Request) (uuid.UUID, error)

// teamRoute is the caller's team (KEY|JWT routes); platformRoute the platform team (ADMIN routes).
func teamRoute(r *http.Request) (uuid.UUID, error) { return TeamOf(httpapi.Identity(r)) }

func platformRoute(*http.Request) (uuid.UUID, error) { return store.PlatformTeamID, nil }

func (s *Service) handleCreate(teamOf teamOfRequest) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		team, err := teamOf(r)
		if err != nil {
			apierr.Write(w, r, err)
			return
		}
		var req createRequest
		if err := apierr.DecodeOptionalJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
			apierr.Write(w, r, err)
			return
		}
		c, err := s.Create(r.Context(), httpapi.Identity(r), team, req.params())
		if err != nil {
			apierr.Write(w, r, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusCreated, s.View(c))
	}
}

func (s *Service) handleList(teamOf teamOfRequest) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		team, err := teamOf(r)
		if err != nil {
			apierr.Write(w, r, err)
			return
		}
		cs, err := s.List(r.Context(), team)
		if err != nil {
			apierr.Write(w, r, err)
			return
		}
		out := make([]Capsule, 0, len(cs))
		for _, c := range cs {
			out = append(out, s.View(c))
		}
		httpapi.WriteJSON(w, http.StatusOK, out)
	}
}

func (s *Service) handleGet(teamOf teamOfRequest) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		team, err := teamOf(r)
		if err != nil {
			apierr.Write(w, r, err)
			return
		}
		c, err := s.Get(r.Context(), team, r.PathValue("id"))
		if err != nil {
			apierr.Write(w, r, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, s.View(c))
	}
}

func (s *Service) handleDestroy(teamOf teamOfRequest) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		team, err := teamOf(r)
		if err == nil {
			err = s.Destroy(r.Context(), httpapi.Identity(r), team, r.PathValue("id"))
		}
		if err != nil {
			apierr.Write(w, r, err)
			return
		}
		httpapi.NoContent(w)
	}
}

func (s *Service) handlePing(w http.ResponseWriter, r *http.Request) {
	team, err := teamRoute(r)
	if err == nil {
		err = s.Ping(r.Context(), team, r.PathValue("id"))
	}
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.NoContent(w)
}

func (s *Service) handlePause(w http.ResponseWriter, r *http.Request) {
	s.transition(w, r, s.Pause)
}

func (s *Service) handleResume(w http.ResponseWriter, r *http.Request) {
	s.transition(w, r, s.Resume)
}

func (s *Service) transition(w http.ResponseWriter, r *http.Request,
	do func(ctx context.Context, actor auth.Identity, team uuid.UUID, rawID string) (db.Capsule, error),
) {
	team, err := teamRoute(r)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	c, err := do(r.Context(), httpapi.Identity(r), team, r.PathValue("id"))
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, s.View(c))
}

func (s *Service) handleMetrics(teamOf teamOfRequest) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		team, err := teamOf(r)
		if err != nil {
			apierr.Write(w, r, err)
			return
		}
		m, err := s.Metrics(r.Context(), team, r.PathValue("id"), r.URL.Query().Get("range"))
		if err != nil {
			apierr.Write(w, r, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, m)
	}
}

func (s *Service) handleStats(w http.ResponseWriter, r *http.Request) {
	team, err := teamRoute(r)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	st, err := s.Stats(r.Context(), team, r.URL.Query().Get("range"), time.Now())
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, st)
}

// snapshotRequest is the body of POST /v1/snapshots.
type snapshotRequest struct {
	apierr.CapsuleRef
	Name string `json:"name"`
}

func (s *Service) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	team, err := teamRoute(r)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	overwrite := false
	if v := r.URL.Query().Get("overwrite"); v != "" {
		if overwrite, err = strconv.ParseBool(v); err != nil {
			apierr.Write(w, r, apierr.InvalidRequest("invalid overwrite: use true or false"))
			return
		}
	}
	var req snapshotRequest
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	if req.CapsuleID() == "" {
		apierr.Write(w, r, apierr.InvalidRequest("capsule_id is required"))
		return
	}
	tpl, err := s.Snapshot(r.Context(), httpapi.Identity(r), team, req.CapsuleID(), req.Name, overwrite)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, s.templateView(r.Context(), tpl, false))
}

func (s *Service) handleAdminSnapshot(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if err := apierr.DecodeOptionalJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	tpl, err := s.SnapshotPlatform(r.Context(), httpapi.Identity(r), r.PathValue("id"), req.Name)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, s.templateView(r.Context(), tpl, true))
}

func (s *Service) handleListTemplates(w http.ResponseWriter, r *http.Request) {
	team, err := teamRoute(r)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	ts, err := s.ListTemplates(r.Context(), team, r.URL.Query().Get("type"))
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, s.templateViews(r.Context(), ts, false))
}

func (s *Service) handleListAllTemplates(w http.ResponseWriter, r *http.Request) {
	ts, err := s.ListAllTemplates(r.Context())
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, s.templateViews(r.Context(), ts, true))
}

func (s *Service) handleDeleteTemplate(teamOf teamOfRequest) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		team, err := teamOf(r)
		if err == nil {
			err = s.DeleteTemplate(r.Context(), httpapi.Identity(r), team, r.PathValue("name"))
		}
		if err != nil {
			apierr.Write(w, r, err)
			return
		}
		httpapi.NoContent(w)
	}
}
