package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/pki"
)

// Defaults of Config (docs/api.md).
const (
	DefaultHeartbeatTimeout = 90 * time.Second
	DefaultMonitorInterval  = 30 * time.Second
	DefaultPendingWait      = 30 * time.Second
)

// Config configures a Service.
type Config struct {
	Store  *store.Store
	Signer *auth.Signer // issues host JWTs
	Log    *slog.Logger // nil: slog.Default()

	// HeartbeatTimeout is how long a host may stay silent before the monitor marks it unreachable
	// (default DefaultHeartbeatTimeout); MonitorInterval is how often the monitor looks (default
	// DefaultMonitorInterval).
	HeartbeatTimeout time.Duration
	MonitorInterval  time.Duration
	// PendingWait bounds how long scheduling waits for a host that registered moments ago to start
	// serving when no online host fits (default DefaultPendingWait).
	PendingWait time.Duration

	// Pool is the warm pool a host keeps for a template with a pool size (docs/api.md, "Warm pools"),
	// the heartbeats' answer. Nil: heartbeats are answered 204 with no pools, and agents keep theirs.
	Pool func(db.Template) DesiredPool

	// Now is the clock of the monitor's cutoff and of the client certificate's renewal; nil: time.Now.
	Now func() time.Time
}

// Service is the fleet: host routes, registration, heartbeats and the monitor, scheduling, and the
// mutual-TLS clients of host agents.
type Service struct {
	store            *store.Store
	signer           *auth.Signer
	log              *slog.Logger
	heartbeatTimeout time.Duration
	monitorInterval  time.Duration
	pendingWait      time.Duration
	now              func() time.Time
	poolOf           func(db.Template) DesiredPool

	ca *pki.CA
	// clientCert is the control plane's client certificate, replaced in place on renewal so every
	// agent transport presents the new one from its next handshake on.
	clientCert *pki.Certificate

	mu       sync.Mutex
	renewAt  time.Time                // when clientCert is renewed next (clock: now)
	conns    map[uuid.UUID]*agentConn // cached agent clients by host
	closed   bool                     // Close was called: no new cached clients
	renewErr error                    // last renewal failure, logged once per change
}

var _ Agents = (*Service)(nil)

// New loads the internal CA (creating it on the very first start; control planes starting together
// agree on one) and issues the control plane's client certificate.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Signer == nil {
		return nil, errors.New("fleet: Store and Signer are required")
	}
	s := &Service{
		store:            cfg.Store,
		signer:           cfg.Signer,
		log:              cfg.Log,
		heartbeatTimeout: cfg.HeartbeatTimeout,
		monitorInterval:  cfg.MonitorInterval,
		pendingWait:      cfg.PendingWait,
		now:              cfg.Now,
		poolOf:           cfg.Pool,
		conns:            make(map[uuid.UUID]*agentConn),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.heartbeatTimeout <= 0 {
		s.heartbeatTimeout = DefaultHeartbeatTimeout
	}
	if s.monitorInterval <= 0 {
		s.monitorInterval = DefaultMonitorInterval
	}
	if s.pendingWait <= 0 {
		s.pendingWait = DefaultPendingWait
	}
	if s.now == nil {
		s.now = time.Now
	}
	ca, err := pki.LoadOrCreateCA(ctx, caStore{cfg.Store.Queries})
	if err != nil {
		return nil, fmt.Errorf("fleet: internal CA: %w", err)
	}
	s.ca = ca
	kp, err := ca.IssueClient()
	if err != nil {
		return nil, fmt.Errorf("fleet: issue client certificate: %w", err)
	}
	if s.clientCert, err = pki.NewCertificate(kp.CertPEM, kp.KeyPEM); err != nil {
		return nil, fmt.Errorf("fleet: client certificate: %w", err)
	}
	s.renewAt = s.now().Add(pki.ClientCertRenewInterval)
	return s, nil
}

// CACertPEM returns the internal CA certificate (what agents receive as ca_cert_pem).
func (s *Service) CACertPEM() []byte { return s.ca.CertPEM() }

// ClientCertificate returns the control plane's current client certificate.
func (s *Service) ClientCertificate() *pki.Certificate { return s.clientCert }

// Run runs the heartbeat monitor and renews the client certificate until ctx ends. Every
// MonitorInterval, hosts silent for longer than HeartbeatTimeout become unreachable and their pending
// and running capsules missing, and registered pending hosts whose agent answers go online; the client
// certificate is renewed every pki.ClientCertRenewInterval.
// On return, idle agent connections are closed.
func (s *Service) Run(ctx context.Context) error {
	defer s.closeIdle()
	t := time.NewTicker(s.monitorInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := s.checkHeartbeats(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("host heartbeat monitor", "err", err)
		}
		if _, _, err := s.activatePending(ctx, "", nil); err != nil && ctx.Err() == nil {
			s.log.Error("probe registered hosts", "err", err)
		}
		s.renewClientCertIfDue()
	}
}

// Close drops the cached agent clients and closes their idle connections. Agent keeps working after
// Close, without caching.
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = make(map[uuid.UUID]*agentConn)
	s.mu.Unlock()
	for _, c := range conns {
		c.transport.CloseIdleConnections()
	}
}

// renewClientCertIfDue issues a new client certificate once the current one is past its renewal
// time. A failure is logged and retried on the next tick; the old certificate stays in use.
func (s *Service) renewClientCertIfDue() {
	s.mu.Lock()
	due := !s.now().Before(s.renewAt)
	s.mu.Unlock()
	if !due {
		return
	}
	kp, err := s.ca.IssueClient()
	if err == nil {
		err = s.clientCert.Set(kp.CertPEM, kp.KeyPEM)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.renewErr == nil || s.renewErr.Error() != err.Error() {
			s.log.Error("renew control plane client certificate", "err", err)
		}
		s.renewErr = err
		return
	}
	s.renewErr = nil
	s.renewAt = s.now().Add(pki.ClientCertRenewInterval)
	s.log.Info("renewed control plane client certificate", "not_after", kp.NotAfter)
}

// caStore keeps the internal CA in the internal_ca table (pki.Store).
type caStore struct{ q *db.Queries }

func (c caStore) LoadCA(ctx context.Context) ([]byte, []byte, error) {
	row, err := c.q.GetInternalCA(ctx)
	if store.IsNotFound(err) {
		return nil, nil, pki.ErrNoCA
	}
	if err != nil {
		return nil, nil, err
	}
	return []byte(row.CertPEM), []byte(row.KeyPEM), nil
}

func (c caStore) CreateCA(ctx context.Context, certPEM, keyPEM []byte) ([]byte, []byte, error) {
	// ON CONFLICT DO NOTHING: a concurrent first start waits for the other insert and keeps its CA.
	if _, err := c.q.InsertInternalCA(ctx, db.InsertInternalCAParams{CertPEM: string(certPEM), KeyPEM: string(keyPEM)}); err != nil {
		return nil, nil, err
	}
	return c.LoadCA(ctx)
}
