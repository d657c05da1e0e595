package accounts

import (
	"context"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/audit"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// APIKey is an API key record (docs/api.md). Key, the secret, is set only in the answer that creates it.
type APIKey struct {
	ID           string `json:"id"`
	TeamID       string `json:"team_id"`
	Name         string `json:"name"`
	KeyPrefix    string `json:"key_prefix"`
	CreatedBy    string `json:"created_by,omitempty"`
	CreatorEmail string `json:"creator_email,omitempty"`
	CreatedAt    string `json:"created_at"`
	LastUsed     string `json:"last_used,omitempty"`
	Key          string `json:"key,omitempty"`
}

func apiKeyJSON(k db.APIKey) APIKey {
	out := APIKey{
		ID: ids.APIKey.Format(k.ID), TeamID: ids.Team.Format(k.TeamID), Name: k.Name, KeyPrefix: k.KeyPrefix,
		CreatedAt: rfc3339(k.CreatedAt),
	}
	if k.CreatedBy != nil {
		out.CreatedBy = ids.User.Format(*k.CreatedBy)
	}
	if k.LastUsedAt != nil {
		out.LastUsed = rfc3339(*k.LastUsedAt)
	}
	return out
}

// mustManageKeys answers 403 unless the caller is an owner or admin of its team: members may list
// the team's keys but not create or revoke them.
func mustManageKeys(id auth.Identity) error {
	if !id.Role.AtLeast(auth.RoleAdmin) {
		return apierr.Forbidden("API keys can be created and revoked by team owners and admins only")
	}
	return nil
}

// POST /v1/api-keys {name?} → 201 APIKey with its secret (owners and admins).
func (s *Service) handleCreateAPIKey(w http.ResponseWriter, r *http.Request) {
	id := httpapi.Identity(r)
	team, err := teamOf(id)
	if err == nil {
		err = mustManageKeys(id)
	}
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	var req struct {
		Name string `json:"name"`
	}
	if err := apierr.DecodeOptionalJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	name := strings.TrimSpace(req.Name)
	if name == "" {
		name = defaultAPIKeyName
	}
	if utf8.RuneCountInString(name) > maxAPIKeyName {
		apierr.Write(w, r, apierr.InvalidRequestf("name must be at most %d characters", maxAPIKeyName))
		return
	}
	out, err := s.createAPIKey(r.Context(), id, team, name)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, out)
}

// GET /v1/api-keys → [APIKey] of the caller's team.
func (s *Service) handleListAPIKeys(w http.ResponseWriter, r *http.Request) {
	team, err := teamOf(httpapi.Identity(r))
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	out, err := s.listAPIKeys(r.Context(), team)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

// DELETE /v1/api-keys/{id} → 204 (owners and admins); another team's key is not found.
func (s *Service) handleDeleteAPIKey(w http.ResponseWriter, r *http.Request) {
	id := httpapi.Identity(r)
	team, err := teamOf(id)
	if err == nil {
		err = mustManageKeys(id)
	}
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	keyID, err := ids.APIKey.Parse(r.PathValue("id"))
	if err != nil {
		apierr.Write(w, r, apierr.InvalidRequest("invalid API key ID"))
		return
	}
	if err := s.deleteAPIKey(r.Context(), id, team, keyID); err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.NoContent(w)
}

// createAPIKey creates a key of team made by the caller; the answer holds its secret.
func (s *Service) createAPIKey(ctx context.Context, caller auth.Identity, team uuid.UUID, name string) (APIKey, error) {
	uid, err := ids.User.Parse(caller.UserID)
	if err != nil {
		return APIKey{}, apierr.Unauthorized("invalid or expired token")
	}
	key := auth.GenerateAPIKey()
	var rec db.APIKey
	err = s.st.Tx(ctx, func(q *db.Queries) error {
		var err error
		rec, err = q.CreateAPIKey(ctx, db.CreateAPIKeyParams{TeamID: team, Name: name, KeyHash: key.Hash, KeyPrefix: key.Prefix, CreatedBy: &uid})
		if err != nil {
			return internal("create API key", err)
		}
		audit.Record(ctx, q, audit.Entry{Team: team, Actor: caller, ResourceType: "api_key", ResourceID: ids.APIKey.Format(rec.ID),
			Action: "api_key.create", Scope: audit.ScopeAdmin, Metadata: map[string]any{"name": name, "key_prefix": key.Prefix}})
		return nil
	})
	if err != nil {
		return APIKey{}, err
	}
	out := apiKeyJSON(rec)
	out.Key = key.Secret
	return out, nil
}

func (s *Service) listAPIKeys(ctx context.Context, team uuid.UUID) ([]APIKey, error) {
	rows, err := s.st.ListAPIKeysByTeam(ctx, team)
	if err != nil {
		return nil, internal("list API keys", err)
	}
	out := make([]APIKey, 0, len(rows))
	for _, row := range rows {
		k := apiKeyJSON(row.APIKey)
		if row.CreatorEmail != nil {
			k.CreatorEmail = *row.CreatorEmail
		}
		out = append(out, k)
	}
	return out, nil
}

func (s *Service) deleteAPIKey(ctx context.Context, caller auth.Identity, team, keyID uuid.UUID) error {
	return s.st.Tx(ctx, func(q *db.Queries) error {
		n, err := q.DeleteAPIKey(ctx, db.DeleteAPIKeyParams{TeamID: team, ID: keyID})
		if err != nil {
			return internal("delete API key", err)
		}
		if n == 0 {
			return apierr.NotFound("API key not found")
		}
		audit.Record(ctx, q, audit.Entry{Team: team, Actor: caller, ResourceType: "api_key", ResourceID: ids.APIKey.Format(keyID),
			Action: "api_key.delete", Scope: audit.ScopeAdmin})
		return nil
	})
}
