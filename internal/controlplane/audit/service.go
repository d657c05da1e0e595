package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Page sizes of the listings (docs/api.md).
const (
	DefaultLimit = 50
	MaxLimit     = 200
)

// Config holds the dependencies of a Service.
type Config struct {
	Store *store.Store
	Log   *slog.Logger // nil: slog.Default()
}

// Service serves the audit-log listings: GET /v1/audit-logs (the caller's team) and
// GET /v1/admin/audit-logs (every team).
type Service struct {
	store *store.Store
	log   *slog.Logger
}

// New returns a Service; Store is required.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("audit: Config.Store is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Service{store: cfg.Store, log: cfg.Log}, nil
}

// Register adds the audit routes to rt.
func (s *Service) Register(rt *httpapi.Router) {
	rt.Handle(http.MethodGet, "/v1/audit-logs", auth.KindJWT, s.handleList)
	rt.Handle(http.MethodGet, "/v1/admin/audit-logs", auth.KindAdmin, s.handleAdminList)
}

// Log is one audit entry as the API returns it (AuditEntry, docs/api.md). TeamID is set in the admin listing
// only, where entries of every team are mixed.
type Log struct {
	ID           string          `json:"id"`
	TeamID       string          `json:"team_id,omitempty"`
	ActorType    string          `json:"actor_type"`
	ActorID      string          `json:"actor_id,omitempty"`
	ActorName    string          `json:"actor_name,omitempty"`
	ResourceType string          `json:"resource_type"`
	ResourceID   string          `json:"resource_id,omitempty"`
	Action       string          `json:"action"`
	Scope        string          `json:"scope"`
	Status       string          `json:"status"`
	Metadata     json.RawMessage `json:"metadata,omitempty"`
	CreatedAt    time.Time       `json:"created_at"`
}

// Page is one page of a listing, newest first. NextBefore and NextBeforeID, set when more entries may
// follow, are the before and before_id of the next page.
type Page struct {
	Items        []Log  `json:"items"`
	NextBefore   string `json:"next_before,omitempty"`
	NextBeforeID string `json:"next_before_id,omitempty"`
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request) {
	id := httpapi.Identity(r)
	team, err := teamOf(id)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	p, err := parseQuery(r.URL.Query(), false)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	p.TeamID = &team
	p.IncludeAdmin = id.Role.CanViewAdminAudit()
	page, err := s.list(r.Context(), p, false)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, page)
}

func (s *Service) handleAdminList(w http.ResponseWriter, r *http.Request) {
	p, err := parseQuery(r.URL.Query(), true)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	p.IncludeAdmin = true
	page, err := s.list(r.Context(), p, true)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, page)
}

// list reads one page: p.MaxResults is the page size; one more row is read to know whether another
// page follows.
func (s *Service) list(ctx context.Context, p db.ListAuditLogsParams, withTeam bool) (Page, error) {
	limit := int(p.MaxResults)
	p.MaxResults++
	rows, err := s.store.ListAuditLogs(ctx, p)
	if err != nil {
		return Page{}, apierr.Internal(fmt.Errorf("list audit logs: %w", err))
	}
	page := Page{Items: make([]Log, 0, min(len(rows), limit))}
	for i, row := range rows {
		if i == limit {
			last := rows[limit-1]
			page.NextBefore = last.CreatedAt.UTC().Format(time.RFC3339Nano)
			page.NextBeforeID = ids.AuditLog.Format(last.ID)
			break
		}
		page.Items = append(page.Items, view(row, withTeam))
	}
	return page, nil
}

func view(row db.AuditLog, withTeam bool) Log {
	l := Log{
		ID:           ids.AuditLog.Format(row.ID),
		ActorType:    row.ActorType,
		ResourceType: row.ResourceType,
		Action:       row.Action,
		Scope:        row.Scope,
		Status:       row.Status,
		CreatedAt:    row.CreatedAt.UTC(),
	}
	if withTeam {
		l.TeamID = ids.Team.Format(row.TeamID)
	}
	if row.ActorID != nil {
		switch row.ActorType {
		case auth.ActorUser:
			l.ActorID = ids.User.Format(*row.ActorID)
		case auth.ActorAPIKey:
			l.ActorID = ids.APIKey.Format(*row.ActorID)
		}
	}
	if row.ActorName != nil {
		l.ActorName = *row.ActorName
	}
	if row.ResourceID != nil {
		l.ResourceID = *row.ResourceID
	}
	if m := strings.TrimSpace(string(row.Metadata)); m != "" && m != "{}" {
		l.Metadata = row.Metadata
	}
	return l
}

var (
	resourceTypeRE = regexp.MustCompile(`^[a-z][a-z_]*$`)
	actionRE       = regexp.MustCompile(`^[a-z][a-z_]*(\.[a-z][a-z_]*)+$`)
)

// parseQuery validates the listing parameters (docs/api.md): limit, before + before_id, resource_type,
// action, and team_id when admin.
func parseQuery(v url.Values, admin bool) (db.ListAuditLogsParams, error) {
	p := db.ListAuditLogsParams{MaxResults: DefaultLimit, ResourceTypes: []string{}}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			return p, apierr.InvalidRequestf("invalid limit %q: must be an integer from 1 to %d", s, MaxLimit)
		}
		p.MaxResults = int32(n)
	}
	if s := v.Get("before"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return p, apierr.InvalidRequestf("invalid before %q: must be an RFC 3339 time (a next_before value)", s)
		}
		p.Before = &t
	}
	if s := v.Get("before_id"); s != "" {
		if p.Before == nil {
			return p, apierr.InvalidRequest("before_id needs before: pass next_before and next_before_id together")
		}
		u, err := ids.AuditLog.Parse(s)
		if err != nil {
			return p, apierr.InvalidRequestf("invalid before_id %q: must be a log- id (a next_before_id value)", s)
		}
		p.BeforeID = &u
	}
	for _, list := range v["resource_type"] {
		for t := range strings.SplitSeq(list, ",") {
			t = strings.TrimSpace(t)
			if t == "" {
				continue
			}
			if !resourceTypeRE.MatchString(t) {
				return p, apierr.InvalidRequestf("invalid resource_type %q: must be lower-case words such as capsule or api_key", t)
			}
			p.ResourceTypes = append(p.ResourceTypes, t)
		}
	}
	if s := v.Get("action"); s != "" {
		if !actionRE.MatchString(s) {
			return p, apierr.InvalidRequestf("invalid action %q: must be <resource>.<verb>, e.g. capsule.create", s)
		}
		p.Action = &s
	}
	if s := v.Get("team_id"); s != "" && admin {
		u, err := ids.Team.Parse(s)
		if err != nil {
			return p, apierr.InvalidRequestf("invalid team_id %q: must be a team- id", s)
		}
		p.TeamID = &u
	}
	return p, nil
}

// teamOf returns the team the caller acts for: 403 no_team without one.
func teamOf(id auth.Identity) (uuid.UUID, error) {
	u, err := ids.Team.Parse(id.TeamID)
	if err != nil {
		return uuid.Nil, apierr.NoTeam("no team selected: create a team or switch to one")
	}
	return u, nil
}
