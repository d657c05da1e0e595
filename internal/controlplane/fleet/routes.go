package fleet

import (
	"net/http"
	"strconv"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
)

// Register registers the host routes of docs/api.md on rt.
func (s *Service) Register(rt *httpapi.Router) {
	rt.Handle(http.MethodPost, "/v1/hosts", auth.KindJWT, s.handleCreate)
	rt.Handle(http.MethodGet, "/v1/hosts", auth.KindJWT, s.handleList)
	rt.Handle(http.MethodGet, "/v1/hosts/{id}", auth.KindJWT, s.handleGet)
	rt.Handle(http.MethodDelete, "/v1/hosts/{id}", auth.KindJWT, s.handleDelete)
	rt.Handle(http.MethodGet, "/v1/hosts/{id}/delete-preview", auth.KindJWT, s.handleDeletePreview)
	rt.Handle(http.MethodPost, "/v1/hosts/{id}/token", auth.KindJWT, s.handleToken)
	rt.Handle(http.MethodGet, "/v1/hosts/{id}/tags", auth.KindJWT, s.handleTags)
	rt.Handle(http.MethodPost, "/v1/hosts/{id}/tags", auth.KindJWT, s.handleAddTag)
	rt.Handle(http.MethodDelete, "/v1/hosts/{id}/tags/{tag}", auth.KindJWT, s.handleRemoveTag)
	rt.Handle(http.MethodPost, "/v1/hosts/register", httpapi.KindNone, s.handleRegister)
	rt.Handle(http.MethodPost, "/v1/hosts/auth/refresh", httpapi.KindNone, s.handleRefresh)
	rt.Handle(http.MethodPost, "/v1/hosts/{id}/heartbeat", auth.KindHost, s.handleHeartbeat)
}

func (s *Service) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req CreateHostRequest
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	out, err := s.createHost(r.Context(), httpapi.Identity(r), req)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, out)
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request) {
	out, err := s.listHosts(r.Context(), httpapi.Identity(r))
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	_, out, err := s.visibleHost(r.Context(), httpapi.Identity(r), r.PathValue("id"))
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

func (s *Service) handleDelete(w http.ResponseWriter, r *http.Request) {
	force := false
	if v := r.URL.Query().Get("force"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			apierr.Write(w, r, apierr.InvalidRequestf("invalid force %q: must be true or false", v))
			return
		}
		force = b
	}
	if err := s.deleteHost(r.Context(), httpapi.Identity(r), r.PathValue("id"), force); err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.NoContent(w)
}

func (s *Service) handleDeletePreview(w http.ResponseWriter, r *http.Request) {
	out, err := s.deletePreview(r.Context(), httpapi.Identity(r), r.PathValue("id"))
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

func (s *Service) handleToken(w http.ResponseWriter, r *http.Request) {
	out, err := s.newToken(r.Context(), httpapi.Identity(r), r.PathValue("id"))
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, out)
}

func (s *Service) handleTags(w http.ResponseWriter, r *http.Request) {
	out, err := s.hostTags(r.Context(), httpapi.Identity(r), r.PathValue("id"))
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

func (s *Service) handleAddTag(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Tag string `json:"tag"`
	}
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	if err := s.addTag(r.Context(), httpapi.Identity(r), r.PathValue("id"), req.Tag); err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.NoContent(w)
}

func (s *Service) handleRemoveTag(w http.ResponseWriter, r *http.Request) {
	if err := s.removeTag(r.Context(), httpapi.Identity(r), r.PathValue("id"), r.PathValue("tag")); err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.NoContent(w)
}

func (s *Service) handleRegister(w http.ResponseWriter, r *http.Request) {
	var req RegisterRequest
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	out, err := s.registerAgent(r.Context(), req)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, out)
}

func (s *Service) handleRefresh(w http.ResponseWriter, r *http.Request) {
	var req RefreshRequest
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	out, err := s.refresh(r.Context(), req)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

func (s *Service) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	var req HeartbeatRequest
	if err := apierr.DecodeOptionalJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	out, err := s.heartbeat(r.Context(), httpapi.Identity(r), r.PathValue("id"), req)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	if out == nil {
		httpapi.NoContent(w)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}
