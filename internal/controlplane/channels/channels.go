// Package channels owns notification channels (docs/api.md): the /v1/channels routes, channel configs sealed
// with AES-256-GCM, and the dispatcher delivering the events audit.Record queues to webhooks and chat
// providers (Discord, Slack, Teams, Google Chat, Telegram, Matrix).
package channels

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/audit"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Defaults of Config.
const (
	DefaultTelegramAPIURL = "https://api.telegram.org"
	DefaultPollInterval   = 500 * time.Millisecond
	DefaultRetryBase      = 10 * time.Second
	DefaultMaxRetryDelay  = time.Hour
	DefaultWorkers        = 4
)

// MaxNameLength is the longest channel name.
const MaxNameLength = 128

// Config holds the dependencies of a Service.
type Config struct {
	Store *store.Store
	// Secret is the 32-byte AES-256-GCM key sealing channel configs (derived from the server secret).
	Secret []byte
	// AllowPrivate lets deliveries connect to any address. By default loopback, private, shared,
	// link-local (cloud metadata), unspecified, multicast and reserved addresses are refused after DNS
	// resolution (docs/security.md); redirects are never followed and every attempt is limited to
	// DeliveryTimeout.
	AllowPrivate bool
	// AllowedNets are ranges deliveries may reach although they are refused by default (e.g. an
	// internal chat server).
	AllowedNets []netip.Prefix
	Log         *slog.Logger // nil: slog.Default()

	// TelegramAPIURL is the Bot API base (default DefaultTelegramAPIURL).
	TelegramAPIURL string
	// PollInterval is how often the dispatcher looks for due deliveries when idle
	// (default DefaultPollInterval).
	PollInterval time.Duration
	// RetryBase is the delay before the first retry of a failed delivery; each retry doubles it, up to
	// MaxRetryDelay (defaults DefaultRetryBase, DefaultMaxRetryDelay).
	RetryBase     time.Duration
	MaxRetryDelay time.Duration
	// Workers is how many deliveries run at once (default DefaultWorkers).
	Workers int
}

// Service is the notification channels area: REST routes and the delivery dispatcher (Run).
type Service struct {
	store         *store.Store
	seal          *sealer
	client        *http.Client
	log           *slog.Logger
	telegramURL   string
	pollInterval  time.Duration
	retryBase     time.Duration
	maxRetryDelay time.Duration
	workers       int
}

// New returns a Service; Store and a 32-byte Secret are required.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("channels: Config.Store is required")
	}
	seal, err := newSealer(cfg.Secret)
	if err != nil {
		return nil, err
	}
	s := &Service{
		store:         cfg.Store,
		seal:          seal,
		log:           cfg.Log,
		telegramURL:   strings.TrimRight(cfg.TelegramAPIURL, "/"),
		pollInterval:  cfg.PollInterval,
		retryBase:     cfg.RetryBase,
		maxRetryDelay: cfg.MaxRetryDelay,
		workers:       cfg.Workers,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.telegramURL == "" {
		s.telegramURL = DefaultTelegramAPIURL
	}
	if s.pollInterval <= 0 {
		s.pollInterval = DefaultPollInterval
	}
	if s.retryBase <= 0 {
		s.retryBase = DefaultRetryBase
	}
	if s.maxRetryDelay <= 0 {
		s.maxRetryDelay = DefaultMaxRetryDelay
	}
	if s.workers <= 0 {
		s.workers = DefaultWorkers
	}
	s.client = &http.Client{
		Transport:     egress{allowAll: cfg.AllowPrivate, allowed: cfg.AllowedNets}.transport(),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       DeliveryTimeout,
	}
	return s, nil
}

// Register adds the channel routes to rt. Every team member may list and read channels (credentials
// are never shown); creating, changing, deleting and testing need an owner or admin.
func (s *Service) Register(rt *httpapi.Router) {
	rt.Handle(http.MethodPost, "/v1/channels", auth.KindJWT, httpapi.Errors(s.handleCreate))
	rt.Handle(http.MethodGet, "/v1/channels", auth.KindJWT, httpapi.Errors(s.handleList))
	rt.Handle(http.MethodPost, "/v1/channels/test", auth.KindJWT, httpapi.Errors(s.handleTest))
	rt.Handle(http.MethodGet, "/v1/channels/{id}", auth.KindJWT, httpapi.Errors(s.handleGet))
	rt.Handle(http.MethodPatch, "/v1/channels/{id}", auth.KindJWT, httpapi.Errors(s.handleUpdate))
	rt.Handle(http.MethodDelete, "/v1/channels/{id}", auth.KindJWT, httpapi.Errors(s.handleDelete))
	rt.Handle(http.MethodPut, "/v1/channels/{id}/config", auth.KindJWT, httpapi.Errors(s.handleConfig))
}

// Channel is a notification channel as the API returns it; its config is never shown. Secret is the
// webhook signing secret, present only in the responses that set it (create, config replacement).
type Channel struct {
	ID        string    `json:"id"`
	TeamID    string    `json:"team_id"`
	Name      string    `json:"name"`
	Provider  string    `json:"provider"`
	Events    []string  `json:"events"`
	Secret    string    `json:"secret,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// CreateRequest is the body of POST /v1/channels.
type CreateRequest struct {
	Name     string          `json:"name"`
	Provider string          `json:"provider"`
	Config   json.RawMessage `json:"config"`
	Events   []string        `json:"events"`
}

// UpdateRequest is the body of PATCH /v1/channels/{id}; absent fields are kept.
type UpdateRequest struct {
	Name   *string   `json:"name"`
	Events *[]string `json:"events"`
}

// ConfigRequest is the body of PUT /v1/channels/{id}/config.
type ConfigRequest struct {
	Config json.RawMessage `json:"config"`
}

// TestRequest is the body of POST /v1/channels/test.
type TestRequest struct {
	Provider string          `json:"provider"`
	Config   json.RawMessage `json:"config"`
}

// caller is an authenticated request's team and whether it may change channels.
type caller struct {
	id     auth.Identity
	team   uuid.UUID
	manage bool
}

func callerOf(r *http.Request) (caller, error) {
	id := httpapi.Identity(r)
	team, err := ids.Team.Parse(id.TeamID)
	if err != nil {
		return caller{}, apierr.NoTeam("no team selected: create a team or switch to one")
	}
	return caller{id: id, team: team, manage: id.Role.AtLeast(auth.RoleAdmin)}, nil
}

func (c caller) mustManage() error {
	if !c.manage {
		return apierr.Forbidden("notification channels can be managed by team owners and admins only")
	}
	return nil
}

// managerOf is callerOf for routes that change channels: owners and admins only.
func managerOf(r *http.Request) (caller, error) {
	c, err := callerOf(r)
	if err == nil {
		err = c.mustManage()
	}
	return c, err
}

func (s *Service) handleCreate(w http.ResponseWriter, r *http.Request) error {
	c, err := managerOf(r)
	if err != nil {
		return err
	}
	var req CreateRequest
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		return err
	}
	out, err := s.create(r.Context(), c, req)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request) error {
	c, err := callerOf(r)
	if err != nil {
		return err
	}
	out, err := s.list(r.Context(), c.team)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) error {
	c, err := callerOf(r)
	if err != nil {
		return err
	}
	row, err := s.get(r.Context(), c.team, r.PathValue("id"))
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, view(row, nil))
	return nil
}

// managedChannel starts a route that changes channel {id}: the caller must manage channels, and the
// body (when body is not nil) is decoded into it.
func managedChannel(r *http.Request, body any) (caller, uuid.UUID, error) {
	c, err := managerOf(r)
	if err != nil {
		return c, uuid.Nil, err
	}
	id, err := parseID(r.PathValue("id"))
	if err != nil {
		return c, uuid.Nil, err
	}
	if body != nil {
		if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, body); err != nil {
			return c, uuid.Nil, err
		}
	}
	return c, id, nil
}

func (s *Service) handleUpdate(w http.ResponseWriter, r *http.Request) error {
	var req UpdateRequest
	c, id, err := managedChannel(r, &req)
	if err != nil {
		return err
	}
	out, err := s.update(r.Context(), c, id, req)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Service) handleConfig(w http.ResponseWriter, r *http.Request) error {
	var req ConfigRequest
	c, id, err := managedChannel(r, &req)
	if err != nil {
		return err
	}
	out, err := s.rotate(r.Context(), c, id, req.Config)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Service) handleDelete(w http.ResponseWriter, r *http.Request) error {
	c, id, err := managedChannel(r, nil)
	if err != nil {
		return err
	}
	if err := s.delete(r.Context(), c, id); err != nil {
		return err
	}
	httpapi.NoContent(w)
	return nil
}

func (s *Service) handleTest(w http.ResponseWriter, r *http.Request) error {
	c, err := managerOf(r)
	if err != nil {
		return err
	}
	var req TestRequest
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		return err
	}
	if err := s.test(r.Context(), c, req); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Service) create(ctx context.Context, c caller, req CreateRequest) (Channel, error) {
	name, err := parseName(req.Name)
	if err != nil {
		return Channel{}, err
	}
	cfg, err := parseConfig(req.Provider, req.Config)
	if err != nil {
		return Channel{}, err
	}
	events, err := parseEvents(req.Events)
	if err != nil {
		return Channel{}, err
	}
	if req.Provider == ProviderWebhook && cfg["secret"] == "" {
		if cfg["secret"], err = newWebhookSecret(); err != nil {
			return Channel{}, apierr.Internal(err)
		}
	}
	id := uuid.New()
	sealed, err := s.seal.seal(id, cfg)
	if err != nil {
		return Channel{}, apierr.Internal(err)
	}
	var row db.Channel
	err = s.store.Tx(ctx, func(q *db.Queries) error {
		var err error
		row, err = q.InsertChannel(ctx, db.InsertChannelParams{
			ID: id, TeamID: c.team, Name: name, Provider: req.Provider, Config: sealed, Events: events,
		})
		if err != nil {
			return fmt.Errorf("insert channel: %w", err)
		}
		s.record(ctx, q, c, row, "channel.create", map[string]any{"name": name, "provider": row.Provider, "events": events})
		return nil
	})
	if err != nil {
		return Channel{}, apierr.Internal(err)
	}
	s.log.Info("channel created", "channel_id", ids.Channel.Format(id), "provider", row.Provider, "team_id", ids.Team.Format(c.team))
	return view(row, cfg), nil
}

func (s *Service) update(ctx context.Context, c caller, id uuid.UUID, req UpdateRequest) (Channel, error) {
	p := db.UpdateChannelParams{TeamID: c.team, ID: id}
	meta := map[string]any{}
	if req.Name != nil {
		name, err := parseName(*req.Name)
		if err != nil {
			return Channel{}, err
		}
		p.Name = &name
		meta["name"] = name
	}
	if req.Events != nil {
		events, err := parseEvents(*req.Events)
		if err != nil {
			return Channel{}, err
		}
		p.Events = events
		meta["events"] = events
	}
	var row db.Channel
	err := s.store.Tx(ctx, func(q *db.Queries) error {
		var err error
		if len(meta) == 0 {
			row, err = q.GetChannel(ctx, db.GetChannelParams{TeamID: c.team, ID: id})
			return err
		}
		if row, err = q.UpdateChannel(ctx, p); err != nil {
			return err
		}
		s.record(ctx, q, c, row, "channel.update", meta)
		return nil
	})
	if store.IsNotFound(err) {
		return Channel{}, apierr.NotFound("channel not found")
	}
	if err != nil {
		return Channel{}, apierr.Internal(fmt.Errorf("update channel: %w", err))
	}
	return view(row, nil), nil
}

// rotate replaces a channel's config (same provider). A webhook without a secret gets a new one.
func (s *Service) rotate(ctx context.Context, c caller, id uuid.UUID, raw json.RawMessage) (Channel, error) {
	cur, err := s.store.GetChannel(ctx, db.GetChannelParams{TeamID: c.team, ID: id})
	if store.IsNotFound(err) {
		return Channel{}, apierr.NotFound("channel not found")
	}
	if err != nil {
		return Channel{}, apierr.Internal(fmt.Errorf("read channel: %w", err))
	}
	cfg, err := parseConfig(cur.Provider, raw)
	if err != nil {
		return Channel{}, err
	}
	if cur.Provider == ProviderWebhook && cfg["secret"] == "" {
		if cfg["secret"], err = newWebhookSecret(); err != nil {
			return Channel{}, apierr.Internal(err)
		}
	}
	sealed, err := s.seal.seal(id, cfg)
	if err != nil {
		return Channel{}, apierr.Internal(err)
	}
	var row db.Channel
	err = s.store.Tx(ctx, func(q *db.Queries) error {
		var err error
		if row, err = q.UpdateChannelConfig(ctx, db.UpdateChannelConfigParams{Config: sealed, TeamID: c.team, ID: id}); err != nil {
			return err
		}
		s.record(ctx, q, c, row, "channel.update", map[string]any{"config_replaced": true})
		return nil
	})
	if store.IsNotFound(err) {
		return Channel{}, apierr.NotFound("channel not found")
	}
	if err != nil {
		return Channel{}, apierr.Internal(fmt.Errorf("update channel config: %w", err))
	}
	return view(row, cfg), nil
}

func (s *Service) delete(ctx context.Context, c caller, id uuid.UUID) error {
	err := s.store.Tx(ctx, func(q *db.Queries) error {
		row, err := q.GetChannel(ctx, db.GetChannelParams{TeamID: c.team, ID: id})
		if err != nil {
			return err
		}
		if _, err := q.DeleteChannel(ctx, db.DeleteChannelParams{TeamID: c.team, ID: id}); err != nil {
			return err
		}
		s.record(ctx, q, c, row, "channel.delete", map[string]any{"name": row.Name, "provider": row.Provider})
		return nil
	})
	if store.IsNotFound(err) {
		return apierr.NotFound("channel not found")
	}
	if err != nil {
		return apierr.Internal(fmt.Errorf("delete channel: %w", err))
	}
	return nil
}

// test sends a test message to an unsaved configuration: 400 naming the failure when it cannot be
// delivered.
func (s *Service) test(ctx context.Context, c caller, req TestRequest) error {
	cfg, err := parseConfig(req.Provider, req.Config)
	if err != nil {
		return err
	}
	typ, actorID, name := c.id.Actor()
	ev := audit.Event{
		Event:     TestEvent,
		Timestamp: time.Now().UTC().Format(time.RFC3339),
		TeamID:    ids.Team.Format(c.team),
		Actor:     audit.EventActor{Type: typ, ID: actorID, Name: name},
		Resource:  audit.EventResource{Type: "channel"},
	}
	if err := s.send(ctx, req.Provider, cfg, ev, uuid.New()); err != nil {
		return apierr.InvalidRequestf("test message failed: %v", err)
	}
	return nil
}

func (s *Service) list(ctx context.Context, team uuid.UUID) ([]Channel, error) {
	rows, err := s.store.ListChannels(ctx, team)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("list channels: %w", err))
	}
	out := make([]Channel, 0, len(rows))
	for _, row := range rows {
		out = append(out, view(row, nil))
	}
	return out, nil
}

func (s *Service) get(ctx context.Context, team uuid.UUID, raw string) (db.Channel, error) {
	id, err := parseID(raw)
	if err != nil {
		return db.Channel{}, err
	}
	row, err := s.store.GetChannel(ctx, db.GetChannelParams{TeamID: team, ID: id})
	if store.IsNotFound(err) {
		return db.Channel{}, apierr.NotFound("channel not found")
	}
	if err != nil {
		return db.Channel{}, apierr.Internal(fmt.Errorf("read channel: %w", err))
	}
	return row, nil
}

// record audits a channel change (scope admin) in q's transaction.
func (s *Service) record(ctx context.Context, q *db.Queries, c caller, row db.Channel, action string, meta map[string]any) {
	audit.Record(ctx, q, audit.Entry{
		Team: c.team, Actor: c.id, ResourceType: "channel", ResourceID: ids.Channel.Format(row.ID),
		Action: action, Scope: audit.ScopeAdmin, Metadata: meta,
	})
}

// view renders row; cfg, the config just set (nil otherwise), adds a webhook's signing secret.
func view(row db.Channel, cfg map[string]string) Channel {
	ch := Channel{
		ID:        ids.Channel.Format(row.ID),
		TeamID:    ids.Team.Format(row.TeamID),
		Name:      row.Name,
		Provider:  row.Provider,
		Events:    row.Events,
		CreatedAt: row.CreatedAt.UTC(),
		UpdatedAt: row.UpdatedAt.UTC(),
	}
	if ch.Events == nil {
		ch.Events = []string{}
	}
	if row.Provider == ProviderWebhook {
		ch.Secret = cfg["secret"]
	}
	return ch
}

func parseID(raw string) (uuid.UUID, error) {
	id, err := ids.Channel.Parse(raw)
	if err != nil {
		return uuid.Nil, apierr.InvalidRequest("invalid channel ID")
	}
	return id, nil
}

func parseName(raw string) (string, error) {
	name := strings.TrimSpace(raw)
	switch n := utf8.RuneCountInString(name); {
	case n == 0:
		return "", apierr.InvalidRequest("name is required")
	case n > MaxNameLength:
		return "", apierr.InvalidRequestf("name must be at most %d characters", MaxNameLength)
	}
	return name, nil
}

// parseEvents checks every event is one of audit.Events; duplicates are dropped.
func parseEvents(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, ev := range in {
		if !slices.Contains(audit.Events, ev) {
			return nil, apierr.InvalidRequestf("invalid event %q: must be one of %s", ev, strings.Join(audit.Events, ", "))
		}
		if !slices.Contains(out, ev) {
			out = append(out, ev)
		}
	}
	return out, nil
}
