package fleet

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/api/hostagent/hostagent/v1/hostagentv1connect"
	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/pki"
)

// Timeouts of agent connections. Requests themselves have no client-side limit (streams are long);
// callers bound them with their contexts.
const (
	dialTimeout      = 5 * time.Second
	handshakeTimeout = 10 * time.Second
	idleConnTimeout  = 90 * time.Second
	// A connection that does not answer an HTTP/2 ping is dropped, so a dead host fails fast instead
	// of hanging on a half-open connection.
	pingInterval = 15 * time.Second
	pingTimeout  = 10 * time.Second
)

// msgHostUnavailable is docs/api.md message of every unreachable-host error.
const msgHostUnavailable = "sandbox host is not reachable"

// agentConn is the cached connection state of one agent: an HTTPS transport whose TLS config checks
// the agent's certificate is that host's, and a Connect client over it.
type agentConn struct {
	address   string
	transport *http.Transport
	client    hostagentv1connect.HostAgentServiceClient
}

// Agent returns the Connect client of host hostID's agent (Connect over HTTPS with mutual TLS 1.3,
// HTTP/2). Hosts that are unknown, have no address, or are not online (draining hosts still serve
// their capsules) are 503 host_unavailable.
func (s *Service) Agent(ctx context.Context, hostID uuid.UUID) (hostagentv1connect.HostAgentServiceClient, error) {
	c, err := s.conn(ctx, hostID)
	if err != nil {
		return nil, err
	}
	return c.client, nil
}

// Transport returns the base URL (https://ip:port) of host hostID's agent and a round tripper with the
// same mutual TLS as Agent, for the port proxy (/proxy/{sandbox_id}/{port}/…). Errors as Agent.
func (s *Service) Transport(ctx context.Context, hostID uuid.UUID) (string, http.RoundTripper, error) {
	c, err := s.conn(ctx, hostID)
	if err != nil {
		return "", nil, err
	}
	return "https://" + c.address, c.transport, nil
}

// conn checks that hostID is reachable and returns its cached (or new) connection.
func (s *Service) conn(ctx context.Context, hostID uuid.UUID) (*agentConn, error) {
	h, err := s.store.GetHost(ctx, hostID)
	if err != nil {
		if store.IsNotFound(err) {
			return nil, apierr.HostUnavailable(msgHostUnavailable).WithCause(fmt.Errorf("host %s not found", ids.Host.Format(hostID)))
		}
		return nil, apierr.Internal(fmt.Errorf("read host %s: %w", ids.Host.Format(hostID), err))
	}
	return s.connOf(hostID, h.Status, h.Address)
}

// AgentOf is Agent for a caller that has just read the host's status and address (capsules.Resolver
// reads them with the capsule in one query): no database read.
func (s *Service) AgentOf(hostID uuid.UUID, status string, address *string) (hostagentv1connect.HostAgentServiceClient, error) {
	c, err := s.connOf(hostID, status, address)
	if err != nil {
		return nil, err
	}
	return c.client, nil
}

// connOf returns the cached (or new) connection of a host in status at address, or 503 when the host
// cannot serve capsules.
func (s *Service) connOf(hostID uuid.UUID, status string, address *string) (*agentConn, error) {
	if address == nil || (status != store.HostOnline && status != store.HostDraining) {
		return nil, apierr.HostUnavailable(msgHostUnavailable).WithCause(fmt.Errorf("host %s is %s", ids.Host.Format(hostID), status))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.conns[hostID]; ok {
		if c.address == *address {
			return c, nil
		}
		c.transport.CloseIdleConnections()
		delete(s.conns, hostID)
	}
	c, err := s.newConn(db.Host{ID: hostID, Address: address})
	if err != nil {
		return nil, apierr.Internal(err)
	}
	if !s.closed {
		s.conns[hostID] = c
	}
	return c, nil
}

// newConn builds the connection of host h, which must have an address. It is also used for hosts
// being deleted (Terminate), whatever their status.
func (s *Service) newConn(h db.Host) (*agentConn, error) {
	hostID := ids.Host.Format(h.ID)
	tlsCfg, err := pki.ControlPlaneTLSConfig(s.clientCert, s.ca.CertPEM(), hostID)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", hostID, err)
	}
	dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext:         dialer.DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: handshakeTimeout,
		ForceAttemptHTTP2:   true,
		IdleConnTimeout:     idleConnTimeout,
		MaxIdleConnsPerHost: 16,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: pingInterval,
			PingTimeout:     pingTimeout,
		},
	}
	return &agentConn{
		address:   *h.Address,
		transport: tr,
		client:    hostagentv1connect.NewHostAgentServiceClient(&http.Client{Transport: tr}, "https://"+*h.Address),
	}, nil
}

// dropConns forgets the cached connections of hosts (unreachable or deleted) and closes their idle
// connections; requests in flight finish on their own.
func (s *Service) dropConns(hostIDs ...uuid.UUID) {
	s.mu.Lock()
	var drop []*agentConn
	for _, id := range hostIDs {
		if c, ok := s.conns[id]; ok {
			drop = append(drop, c)
			delete(s.conns, id)
		}
	}
	s.mu.Unlock()
	for _, c := range drop {
		c.transport.CloseIdleConnections()
	}
}

// closeIdle closes the idle connections of every cached agent.
func (s *Service) closeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.transport.CloseIdleConnections()
	}
}
