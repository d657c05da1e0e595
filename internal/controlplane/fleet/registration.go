package fleet

import (
	"context"
	"fmt"
	"math"
	"net"
	"regexp"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/audit"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Messages of the 401s of registration and refresh; an unknown, used and expired token look alike.
const (
	msgBadRegistrationToken = "invalid, used or expired registration token"
	msgBadRefreshToken      = "invalid, revoked or expired refresh token"
)

// RegisterRequest is the body of POST /v1/hosts/register (the agent's first call).
type RegisterRequest struct {
	Token    string `json:"token"`
	Address  string `json:"address"`
	Arch     string `json:"arch"`
	CPUCores *int64 `json:"cpu_cores"`
	MemoryMB *int64 `json:"memory_mb"`
	DiskGB   *int64 `json:"disk_gb"`
}

// RefreshRequest is the body of POST /v1/hosts/auth/refresh.
type RefreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

// dnsName is what an address may name instead of an IP.
var dnsName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

// registerAgent consumes a registration token: the pending host gets the agent's address and specs
// (it stays pending until the control plane reaches the agent: see activate); the agent gets its
// credentials.
func (s *Service) registerAgent(ctx context.Context, req RegisterRequest) (Credentials, error) {
	if !auth.HostRegistrationToken.Valid(req.Token) {
		return Credentials{}, apierr.Unauthorized(msgBadRegistrationToken)
	}
	params, err := registerParams(req)
	if err != nil {
		return Credentials{}, err
	}
	var creds Credentials
	err = s.store.Tx(ctx, func(q *db.Queries) error {
		tok, err := q.ConsumeHostRegistrationToken(ctx, auth.HashSecret(req.Token))
		if err != nil {
			if store.IsNotFound(err) {
				return apierr.Unauthorized(msgBadRegistrationToken)
			}
			return apierr.Internal(fmt.Errorf("consume registration token: %w", err))
		}
		params.ID = tok.HostID
		h, err := q.RegisterHost(ctx, params)
		if err != nil {
			if store.IsNotFound(err) {
				return apierr.InvalidState("host is already registered: create a new host for this agent")
			}
			return apierr.Internal(fmt.Errorf("register host: %w", err))
		}
		creds, err = s.issueCredentials(ctx, q, h, nil)
		return err
	})
	if err != nil {
		return Credentials{}, err
	}
	s.log.Info("host registered", "host_id", creds.Host.ID, "address", creds.Host.Address)
	return creds, nil
}

// refresh rotates a refresh token and issues new credentials for its host.
func (s *Service) refresh(ctx context.Context, req RefreshRequest) (Credentials, error) {
	if !auth.HostRefreshToken.Valid(req.RefreshToken) {
		return Credentials{}, apierr.Unauthorized(msgBadRefreshToken)
	}
	var creds Credentials
	err := s.store.Tx(ctx, func(q *db.Queries) error {
		next := auth.HostRefreshToken.New()
		rt, err := q.RotateHostRefreshToken(ctx, db.RotateHostRefreshTokenParams{
			OldTokenHash: auth.HashSecret(req.RefreshToken), NewTokenHash: next.Hash, TTLSeconds: ttlSeconds(auth.HostRefreshToken.TTL),
		})
		if err != nil {
			if store.IsNotFound(err) {
				return apierr.Unauthorized(msgBadRefreshToken)
			}
			return apierr.Internal(fmt.Errorf("rotate refresh token: %w", err))
		}
		h, err := q.GetHost(ctx, rt.HostID)
		if err != nil {
			if store.IsNotFound(err) {
				return apierr.Unauthorized(msgBadRefreshToken)
			}
			return apierr.Internal(fmt.Errorf("read host: %w", err))
		}
		if h.Address == nil {
			return apierr.Unauthorized(msgBadRefreshToken)
		}
		creds, err = s.issueCredentials(ctx, q, h, &next)
		return err
	})
	if err != nil {
		return Credentials{}, err
	}
	s.log.Debug("host credentials refreshed", "host_id", creds.Host.ID)
	return creds, nil
}

// issueCredentials issues a host JWT and an mTLS server certificate for registered host h, and stores
// refresh (a new refresh token when nil).
func (s *Service) issueCredentials(ctx context.Context, q *db.Queries, h db.Host, refresh *auth.Token) (Credentials, error) {
	hostID := ids.Host.Format(h.ID)
	if refresh == nil {
		t := auth.HostRefreshToken.New()
		if _, err := q.CreateHostRefreshToken(ctx, db.CreateHostRefreshTokenParams{
			HostID: h.ID, TokenHash: t.Hash, TTLSeconds: ttlSeconds(auth.HostRefreshToken.TTL),
		}); err != nil {
			return Credentials{}, apierr.Internal(fmt.Errorf("create refresh token: %w", err))
		}
		refresh = &t
	}
	jwt, _, err := s.signer.IssueHost(hostID)
	if err != nil {
		return Credentials{}, apierr.Internal(err)
	}
	kp, err := s.ca.IssueAgent(hostID, *h.Address)
	if err != nil {
		return Credentials{}, apierr.Internal(err)
	}
	return Credentials{
		Host:         hostJSON(h, nil),
		Token:        jwt,
		RefreshToken: refresh.Plain,
		CertPEM:      string(kp.CertPEM),
		KeyPEM:       string(kp.KeyPEM),
		CACertPEM:    string(s.ca.CertPEM()),
	}, nil
}

// registerParams validates the agent's address and specs.
func registerParams(req RegisterRequest) (db.RegisterHostParams, error) {
	var p db.RegisterHostParams
	if req.Address == "" {
		return p, apierr.InvalidRequest("address is required: the ip:port of the agent's RPC listener")
	}
	addr, err := checkAddress(req.Address)
	if err != nil {
		return p, err
	}
	p.Address = addr
	if req.Arch != "" {
		if p.Arch, err = optionalText("arch", req.Arch); err != nil {
			return p, err
		}
	}
	for _, f := range []struct {
		name string
		v    *int64
		dst  **int32
	}{
		{"cpu_cores", req.CPUCores, &p.CPUCores},
		{"memory_mb", req.MemoryMB, &p.MemoryMB},
		{"disk_gb", req.DiskGB, &p.DiskGB},
	} {
		if f.v == nil || *f.v == 0 {
			continue
		}
		if *f.v < 0 || *f.v > math.MaxInt32 {
			return p, apierr.InvalidRequestf("invalid %s %d: must be a positive integer", f.name, *f.v)
		}
		n := int32(*f.v)
		*f.dst = &n
	}
	return p, nil
}

// checkAddress validates an agent address: host:port where host is an IP (not unspecified) or a DNS
// name; IPs are written canonically.
func checkAddress(a string) (string, error) {
	bad := apierr.InvalidRequestf("invalid address %q: must be the ip:port the control plane reaches the agent's RPC listener on", a)
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		return "", bad
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", bad
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsUnspecified() || ip.IsMulticast() {
			return "", apierr.InvalidRequestf("invalid address %q: %s is not an address the control plane can reach; send the agent's own IP", a, host)
		}
		return net.JoinHostPort(ip.String(), port), nil
	}
	if len(host) > 253 || !dnsName.MatchString(host) {
		return "", bad
	}
	return net.JoinHostPort(host, port), nil
}

// heartbeat records a heartbeat of hostID (the caller's host) and its pool report (docs/api.md,
// "Warm pools"), and answers the pools the control plane wants on the host (nil without
// Config.Pool). An unreachable host comes back online, and a registered pending host goes online once
// its agent answers a probe over mutual TLS (the agent sends its first heartbeat once it serves).
func (s *Service) heartbeat(ctx context.Context, caller auth.Identity, raw string, req HeartbeatRequest) (*HeartbeatResponse, error) {
	if raw != caller.HostID {
		return nil, apierr.Forbidden("the host token is for another host")
	}
	id, err := ids.Host.Parse(raw)
	if err != nil {
		return nil, apierr.Forbidden("the host token is for another host")
	}
	if err := req.validate(); err != nil {
		return nil, err
	}
	var (
		up  bool
		hb  db.HostHeartbeatRow
		out *HeartbeatResponse
	)
	err = s.store.Tx(ctx, func(q *db.Queries) error {
		var err error
		hb, err = q.HostHeartbeat(ctx, id)
		if err != nil {
			if store.IsNotFound(err) {
				return apierr.NotFound("host not found")
			}
			return apierr.Internal(fmt.Errorf("record heartbeat: %w", err))
		}
		if err := storePoolReport(ctx, q, id, req); err != nil {
			return apierr.Internal(err)
		}
		if s.poolOf != nil {
			pools, err := s.desiredPools(ctx, q, id, hb.Type)
			if err != nil {
				return apierr.Internal(err)
			}
			out = &HeartbeatResponse{Pools: pools}
		}
		if hb.PreviousStatus == store.HostUnreachable && hb.Status == store.HostOnline {
			up = true
			s.recordHostEvent(ctx, q, id, actionUp, nil)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if up {
		s.log.Info("host is back online", "host_id", raw)
	}
	if hb.Status == store.HostPending && hb.Address != nil {
		s.activate(ctx, db.Host{ID: id, Address: hb.Address})
	}
	return out, nil
}

// recordHostEvent audits a system action on host id (host.up, host.down).
func (s *Service) recordHostEvent(ctx context.Context, q *db.Queries, id uuid.UUID, action string, meta map[string]any) {
	team := store.PlatformTeamID
	if h, err := q.GetHost(ctx, id); err == nil {
		team = teamOf(h)
	}
	audit.Record(ctx, q, audit.Entry{
		Team: team, ResourceType: "host", ResourceID: ids.Host.Format(id),
		Action: action, Scope: audit.ScopeAdmin, Metadata: meta,
	})
}

func ttlSeconds(d time.Duration) int32 { return int32(d / time.Second) }
