package capsules

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/api/hostagent/hostagent/v1/hostagentv1connect"
	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/fleet"
	"github.com/wrenn/wrenn/internal/controlplane/seal"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Scheduler places new capsules on hosts (docs/api.md): the least-loaded online host the team may use that
// fits memoryMB and diskMB, other than the hosts in avoid. Nothing fits → *apierr.Error 503 no_capacity.
type Scheduler interface {
	Pick(ctx context.Context, team uuid.UUID, memoryMB, diskMB int32, avoid ...uuid.UUID) (db.Host, error)
}

// HostScheduler is implemented by schedulers that can check one given host: a capsule created from a
// snapshot template must run on the host holding the template's files. Without it the host only has to
// be online.
type HostScheduler interface {
	PickHost(ctx context.Context, host, team uuid.UUID, memoryMB, diskMB int32) (db.Host, error)
}

// PoolScheduler is implemented by schedulers that prefer, among the hosts that fit, one with a ready
// warm pool member of the create's template and shape (fleet's PickPooled).
type PoolScheduler interface {
	PickPooled(ctx context.Context, team uuid.UUID, pool fleet.PoolShape, memoryMB, diskMB int32, avoid ...uuid.UUID) (db.Host, error)
}

// Defaults of Config.
const (
	DefaultReconcileInterval = 10 * time.Second
	DefaultStatsInterval     = 10 * time.Second
)

// Config holds the dependencies of a Service.
type Config struct {
	Store     *store.Store
	Agents    fleet.Agents
	Scheduler Scheduler
	Log       *slog.Logger
	// ReconcileInterval is how often every online host's capsules are compared with the database.
	ReconcileInterval time.Duration
	// StatsInterval is how often team usage is sampled for /v1/capsules/stats.
	StatsInterval time.Duration
	// Secret is the 32-byte key sealing capsules' envd access tokens in the database (docs/security.md).
	// Nil: a random key of this process (tests; tokens sealed by another process then do not open).
	Secret []byte
	// PoolReportMaxAge is the age past which a host's warm pool report no longer counts in the
	// template JSON's pool.ready (default fleet.DefaultHeartbeatTimeout: the fleet's heartbeat timeout).
	PoolReportMaxAge time.Duration
	// Quota is the platform default of every team's quota (docs/security.md, "Quotas"); admins
	// override it per team. Zero limits are unlimited.
	Quota Quota
}

// Service is the capsule lifecycle: the REST handlers of docs/api.md, the admin capsule and template
// routes, team capsule teardown, the reconciler and the team stats sampler. It embeds the Resolver the
// guest routes use.
type Service struct {
	*Resolver
	sched             Scheduler
	quota             Quota
	reconcileInterval time.Duration
	statsInterval     time.Duration
	poolReportMaxAge  time.Duration
}

// New returns a Service; Store, Agents and Scheduler are required.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("capsules: Config.Store is required")
	case cfg.Agents == nil:
		return nil, errors.New("capsules: Config.Agents is required")
	case cfg.Scheduler == nil:
		return nil, errors.New("capsules: Config.Scheduler is required")
	case cfg.Quota.Capsules < 0 || cfg.Quota.VCPUs < 0 || cfg.Quota.MemoryMB < 0 || cfg.Quota.PausedDiskMB < 0:
		return nil, errors.New("capsules: Config.Quota limits must not be negative")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.ReconcileInterval <= 0 {
		cfg.ReconcileInterval = DefaultReconcileInterval
	}
	if cfg.StatsInterval <= 0 {
		cfg.StatsInterval = DefaultStatsInterval
	}
	if cfg.PoolReportMaxAge <= 0 {
		cfg.PoolReportMaxAge = fleet.DefaultHeartbeatTimeout
	}
	if cfg.Secret == nil {
		cfg.Secret = make([]byte, 32)
		if _, err := rand.Read(cfg.Secret); err != nil {
			return nil, fmt.Errorf("capsules: token key: %w", err)
		}
	}
	box, err := seal.New(cfg.Secret)
	if err != nil {
		return nil, fmt.Errorf("capsules: Config.Secret: %w", err)
	}
	return &Service{
		Resolver:          &Resolver{Store: cfg.Store, Agents: cfg.Agents, Log: cfg.Log, Tokens: box},
		sched:             cfg.Scheduler,
		quota:             cfg.Quota,
		reconcileInterval: cfg.ReconcileInterval,
		statsInterval:     cfg.StatsInterval,
		poolReportMaxAge:  cfg.PoolReportMaxAge,
	}, nil
}

// agentOf returns a client of the agent of capsule c's host: 503 host_unavailable without one.
func (s *Service) agentOf(ctx context.Context, c db.Capsule) (hostagentv1connect.HostAgentServiceClient, error) {
	if c.HostID == nil {
		return nil, apierr.HostUnavailable("sandbox host is not reachable")
	}
	return s.Agents.Agent(ctx, *c.HostID)
}
