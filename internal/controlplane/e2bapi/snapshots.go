package e2bapi

import (
	"net/http"
	"slices"
	"strconv"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/store"
)

// snapshotInfo is E2B's SnapshotInfo: a Wrenn snapshot template, named by its template name.
type snapshotInfo struct {
	SnapshotID string   `json:"snapshotID"`
	Names      []string `json:"names"`
}

// handleSnapshot captures the sandbox as a snapshot template of the team (docs/e2b.md). The sandbox is
// paused for the capture and resumed afterwards if it was running.
func (s *Service) handleSnapshot(w http.ResponseWriter, r *http.Request, c caller) error {
	var b struct {
		Name string `json:"name"`
	}
	if err := decodeBody(r, &b); err != nil {
		return err
	}
	raw := r.PathValue("id")
	capsule, err := s.get(r, c, raw)
	if err != nil {
		return err
	}
	tpl, err := s.caps.Snapshot(r.Context(), c.id, c.team, capsuleID(raw), b.Name, false)
	if err != nil {
		return err
	}
	if capsule.Status == store.CapsuleRunning {
		if _, err := s.caps.Resume(r.Context(), c.id, c.team, capsuleID(raw)); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusCreated, snapshotInfo{SnapshotID: tpl.Name, Names: []string{tpl.Name}})
	return nil
}

// handleListSnapshots lists the team's snapshot templates by name, paged by name.
func (s *Service) handleListSnapshots(w http.ResponseWriter, r *http.Request, c caller) error {
	q := r.URL.Query()
	if q.Get("sandboxID") != "" {
		return apierr.InvalidRequest("listing snapshots by sandbox is not supported by Wrenn")
	}
	limit := defaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			return apierr.InvalidRequestf("limit must be between 1 and %d", maxLimit)
		}
		limit = n
	}
	ts, err := s.caps.ListTemplates(r.Context(), c.team, store.TemplateSnapshot)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(ts))
	for _, t := range ts {
		if t.TeamID == c.team && (q.Get("name") == "" || t.Name == q.Get("name")) {
			names = append(names, t.Name)
		}
	}
	slices.Sort(names)
	if after := q.Get("nextToken"); after != "" {
		i, _ := slices.BinarySearch(names, after)
		for i < len(names) && names[i] <= after {
			i++
		}
		names = names[i:]
	}
	if len(names) > limit {
		names = names[:limit]
		w.Header().Set(NextTokenHeader, names[limit-1])
	}
	out := make([]snapshotInfo, 0, len(names))
	for _, n := range names {
		out = append(out, snapshotInfo{SnapshotID: n, Names: []string{n}})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// handleDeleteSnapshot deletes a snapshot template of the team (E2B deleteSnapshot).
func (s *Service) handleDeleteSnapshot(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := s.caps.DeleteTemplate(r.Context(), c.id, c.team, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
