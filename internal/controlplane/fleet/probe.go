package fleet

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// probeTimeout bounds one probe of an agent's mutual-TLS listener.
const probeTimeout = 10 * time.Second

// probe reaches the agent of registered host h over mutual TLS (GET /health on its RPC listener, with
// the host's certificate checked as for every call) and reports why it could not.
func (s *Service) probe(ctx context.Context, h db.Host) error {
	c, err := s.newConn(h)
	if err != nil {
		return err
	}
	defer c.transport.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+c.address+"/health", nil)
	if err != nil {
		return err
	}
	res, err := (&http.Client{Transport: c.transport}).Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("agent health: status %d", res.StatusCode)
	}
	return nil
}

// activate probes registered pending host h and, when its agent answers, makes it online: from then
// on it takes work. It reports whether the host is online now (also when another control plane was
// first).
func (s *Service) activate(ctx context.Context, h db.Host) bool {
	hostID := ids.Host.Format(h.ID)
	if err := s.probe(ctx, h); err != nil {
		s.log.Debug("registered host not reachable yet", "host_id", hostID, "address", *h.Address, "err", err)
		return false
	}
	var changed int64
	err := s.store.Tx(ctx, func(q *db.Queries) error {
		var err error
		if changed, err = q.MarkHostOnline(ctx, h.ID); err != nil || changed == 0 {
			return err
		}
		s.recordHostEvent(ctx, q, h.ID, actionUp, map[string]any{"first_contact": true})
		return nil
	})
	if err != nil {
		s.log.Error("mark host online", "host_id", hostID, "err", err)
		return false
	}
	if changed > 0 {
		s.log.Info("host online: its agent answers over mutual TLS", "host_id", hostID, "address", *h.Address)
	}
	return true
}

// recentlyActive is how long after its registration or last heartbeat a pending host counts as
// starting: a create with no other host waits for it rather than failing at once.
const recentlyActive = 2 * time.Minute

// activatePending probes the registered pending hosts of type typ (every type when empty) and team
// (any when nil) at once. It reports whether any of them went online, and whether some that are not
// reachable yet registered or heartbeated recently (their agent is likely starting).
func (s *Service) activatePending(ctx context.Context, typ string, team *uuid.UUID) (up, starting bool, err error) {
	hosts, err := s.store.ListRegisteredPendingHosts(ctx, db.ListRegisteredPendingHostsParams{Type: typ, TeamID: team})
	if err != nil {
		return false, false, fmt.Errorf("list registered pending hosts: %w", err)
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	recent := s.now().Add(-recentlyActive)
	for _, h := range hosts {
		wg.Go(func() {
			ok := s.activate(ctx, h)
			mu.Lock()
			defer mu.Unlock()
			up = up || ok
			starting = starting || (!ok && h.UpdatedAt.After(recent))
		})
	}
	wg.Wait()
	return up, starting, nil
}
