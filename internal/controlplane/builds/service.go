// Package builds is the template builder (docs/api.md, "Template builds"): the admin build routes, the
// build queue in PostgreSQL and the workers that run a recipe in a build capsule and store the result
// as a platform template. The recipe language is package recipe; archive checks are package archive.
package builds

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Defaults of Config.
const (
	DefaultWorkers      = 2
	DefaultLease        = 20 * time.Second
	DefaultPollInterval = time.Second
)

// Capsules is what the builder needs of the capsule service: the build capsule's lifecycle and the
// capture of the result.
type Capsules interface {
	Create(ctx context.Context, actor auth.Identity, team uuid.UUID, p capsules.CreateParams) (db.Capsule, error)
	Resolve(ctx context.Context, team uuid.UUID, raw string, needs ...string) (capsules.Target, error)
	CaptureBuild(ctx context.Context, actor auth.Identity, b capsules.BuildCapture) (db.Template, error)
	DestroyPlatform(ctx context.Context, actor auth.Identity, id uuid.UUID) error
}

// Config holds the dependencies of a Service.
type Config struct {
	Store    *store.Store
	Capsules Capsules
	Log      *slog.Logger
	// Workers is how many builds this control plane runs at once: 0 = DefaultWorkers (docs/api.md),
	// negative = none (the reaper of lost builds still runs).
	Workers int
	// Lease is how long a running build stays claimed without its worker renewing it; after that
	// another control plane fails it. Renewed every Lease/10.
	Lease time.Duration
	// PollInterval is how often idle workers look for pending builds and expired leases.
	PollInterval time.Duration
}

// Service serves the build routes and runs the build workers (Run).
type Service struct {
	store  *store.Store
	caps   Capsules
	log    *slog.Logger
	cfg    Config
	wake   chan struct{}
	mu     sync.Mutex
	active map[uuid.UUID]context.CancelFunc // builds running in this process
}

// New returns a Service; Store and Capsules are required.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("builds: Config.Store is required")
	case cfg.Capsules == nil:
		return nil, errors.New("builds: Config.Capsules is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	return &Service{store: cfg.Store, caps: cfg.Capsules, log: cfg.Log, cfg: cfg,
		wake: make(chan struct{}, 1), active: map[uuid.UUID]context.CancelFunc{}}, nil
}

// Run runs the workers and the reaper of expired builds until ctx ends; it returns once every build
// this process runs has stopped.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range max(s.cfg.Workers, 0) {
		wg.Go(func() { s.work(ctx) })
	}
	wg.Go(func() { s.reap(ctx) })
	wg.Wait()
	return nil
}

// nudge wakes an idle worker (a build was queued here).
func (s *Service) nudge() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// work claims pending builds, oldest first, and runs them one at a time.
func (s *Service) work(ctx context.Context) {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		for ctx.Err() == nil {
			b, err := s.store.ClaimBuild(ctx, s.cfg.Lease.Seconds())
			if store.IsNotFound(err) {
				break
			}
			if err != nil {
				if ctx.Err() == nil {
					s.log.Error("claim build", "err", err)
				}
				break
			}
			s.run(ctx, b)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-t.C:
		}
	}
}

// errLost is the error of a build whose control plane stopped while it ran.
const errLost = "the control plane running the build stopped"

// reap fails running builds whose lease ran out (their control plane died) and destroys their
// capsules; it also deletes archives left behind by finished builds.
func (s *Service) reap(ctx context.Context) {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		reason := errLost
		lost, err := s.store.FailExpiredBuilds(ctx, &reason)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("fail expired builds", "err", err)
			}
			continue
		}
		for _, b := range lost {
			s.log.Warn("build failed: its control plane stopped", "build_id", buildID(b.ID))
			if b.CapsuleID != nil {
				if err := s.caps.DestroyPlatform(ctx, auth.Identity{}, *b.CapsuleID); err != nil {
					s.log.Warn("destroy capsule of a lost build", "build_id", buildID(b.ID), "err", err)
				}
			}
		}
		left, err := s.store.ListFinishedBuildsWithArchive(ctx)
		if err != nil {
			continue
		}
		for _, id := range left {
			if _, err := s.store.DeleteBuildArchive(ctx, id); err != nil && ctx.Err() == nil {
				s.log.Warn("delete archive of a finished build", "build_id", buildID(id), "err", err)
			}
		}
	}
}

// track registers cancel as the way to abort build id in this process; the returned func forgets it.
func (s *Service) track(id uuid.UUID, cancel context.CancelFunc) func() {
	s.mu.Lock()
	s.active[id] = cancel
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.active, id)
		s.mu.Unlock()
	}
}

// abort cancels build id if this process runs it (another process notices at its next lease renewal).
func (s *Service) abort(id uuid.UUID) {
	s.mu.Lock()
	cancel := s.active[id]
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}
