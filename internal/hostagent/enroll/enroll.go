// Package enroll is the host agent's side of its relationship with the
// control plane (docs/api.md): one-time registration with a token,
// credentials kept in a state file (host JWT, rotating refresh token, mTLS
// server certificate and the internal CA), heartbeats, refresh before
// expiry, and the reactions to losing the control plane — pause every
// capsule after repeated failures, refresh on 401/403, shut down when the
// host was deleted.
package enroll

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/wrenn/wrenn/internal/pki"
)

// Timing of the protocol.
const (
	// DefaultHeartbeatInterval is how often the agent reports (docs/api.md).
	DefaultHeartbeatInterval = 30 * time.Second
	// MaxFailures is how many heartbeats in a row may fail before the
	// agent pauses its capsules.
	MaxFailures = 3
	// requestTimeout bounds each call to the control plane.
	requestTimeout = 15 * time.Second
	// maxBackoff caps the wait between registration attempts.
	maxBackoff = 30 * time.Second
)

// ErrRejected is returned (wrapped) when the control plane refuses the
// agent's credentials for good: an invalid, used or expired registration
// or refresh token.
var ErrRejected = errors.New("credentials rejected by the control plane")

// Specs are the machine's resources, reported at registration.
type Specs struct {
	Arch     string
	CPUCores int
	MemoryMB int
	DiskGB   int
}

// Config configures a Client.
type Config struct {
	// ControlPlaneURL is the control plane's base URL (https://cp.example.com).
	ControlPlaneURL string
	// RegistrationToken is the one-time token of POST /v1/hosts; needed
	// only when StateFile holds no credentials yet.
	RegistrationToken string
	// Address is the ip:port the control plane reaches the agent at (its
	// certificate is issued for it).
	Address string
	// StateFile keeps the credentials (mode 0600), e.g.
	// <data-dir>/credentials.json.
	StateFile string
	Specs     Specs
	// HTTPClient calls the control plane (default: a client with its own
	// transport).
	HTTPClient *http.Client
	Log        *slog.Logger
	// PauseAll pauses every running capsule; called after MaxFailures
	// heartbeats in a row failed and when the credentials are rejected.
	PauseAll func(ctx context.Context) error
	// OnDeleted is called once the control plane answered that the host no
	// longer exists; the state file is already deleted. The agent shuts
	// down.
	OnDeleted func()
	// Pools, when set, reports the agent's warm pools with every heartbeat
	// (docs/api.md, "Warm pools"); nil sends heartbeats without a body.
	Pools func() []PoolReport
	// ApplyPools, when set, is called with the pools the control plane
	// wants on this host, from every heartbeat answer that names them (an
	// answer without a pools field, from an older control plane, does not
	// call it). It runs on the heartbeat loop.
	ApplyPools func(ctx context.Context, pools []DesiredPool)
	// HeartbeatInterval defaults to DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Credentials are what registration and refresh hand the agent.
type Credentials struct {
	HostID       string // host-…
	Token        string // host JWT, sent as X-Host-Token
	RefreshToken string
	CertPEM      []byte // the agent's mTLS server certificate
	KeyPEM       []byte
	CACertPEM    []byte // the internal CA, which also signs the control plane's client certificate
}

// Client registers the agent and keeps its credentials fresh.
type Client struct {
	cfg  Config
	log  *slog.Logger
	base *url.URL
	http *http.Client

	mu         sync.Mutex
	creds      Credentials
	cert       *pki.Certificate
	storedAddr string // the address the stored credentials were issued for
}

// New checks cfg and returns a Client; call Enroll, then TLSConfig and Run.
func New(cfg Config) (*Client, error) {
	base, err := url.Parse(strings.TrimSuffix(cfg.ControlPlaneURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("control plane URL %q: want http(s)://host[:port]", cfg.ControlPlaneURL)
	}
	if err := checkAddress(cfg.Address); err != nil {
		return nil, err
	}
	if cfg.StateFile == "" {
		return nil, errors.New("enroll: StateFile is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{
			Proxy:             http.ProxyFromEnvironment,
			ForceAttemptHTTP2: true,
			IdleConnTimeout:   90 * time.Second,
		}}
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Client{cfg: cfg, log: cfg.Log, base: base, http: cfg.HTTPClient}, nil
}

// checkAddress accepts ip:port with a specific (not wildcard) IP and a port.
func checkAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" || port == "0" {
		return fmt.Errorf("advertised address %q: want ip:port", addr)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return fmt.Errorf("advertised address %q: want an IP address, not a name", addr)
	}
	if ip.IsUnspecified() {
		return fmt.Errorf("advertised address %q: the control plane cannot reach a wildcard address; advertise the machine's IP", addr)
	}
	return nil
}

// Enroll makes the agent a registered host: it loads the credentials in
// StateFile or, when there are none, registers with RegistrationToken and
// stores them. Unreachable control planes and 5xx answers are retried until
// ctx ends; refusals fail at once. Stored credentials past their half life
// are refreshed.
func (c *Client) Enroll(ctx context.Context) (Credentials, error) {
	creds, err := c.load()
	switch {
	case errors.Is(err, os.ErrNotExist):
		if c.cfg.RegistrationToken == "" {
			return Credentials{}, fmt.Errorf("no credentials in %s and no registration token: create a host (POST /v1/hosts) and pass its registration_token with -registration-token or WRENN_REGISTRATION_TOKEN", c.cfg.StateFile)
		}
		// Fail before the token is consumed if the credentials could not
		// be kept.
		if err := os.MkdirAll(filepath.Dir(c.cfg.StateFile), 0o700); err != nil {
			return Credentials{}, fmt.Errorf("credentials directory: %w", err)
		}
		creds, err = c.register(ctx)
		if err != nil {
			return Credentials{}, err
		}
		if err := c.adopt(creds); err != nil {
			return Credentials{}, fmt.Errorf("registration answer: %w", err)
		}
		if err := c.save(creds); err != nil {
			return Credentials{}, fmt.Errorf("store credentials (the registration token is used up; create a new one): %w", err)
		}
		c.log.Info("registered with the control plane", "host_id", creds.HostID, "address", c.cfg.Address)
		return creds, nil
	case err != nil:
		return Credentials{}, err
	}
	if c.storedAddr != "" && c.storedAddr != c.cfg.Address {
		return Credentials{}, fmt.Errorf("credentials in %s were issued for address %s, but the agent now advertises %s: the control plane only knows %s; advertise it again, or delete the host and register anew", c.cfg.StateFile, c.storedAddr, c.cfg.Address, c.storedAddr)
	}
	if err := c.adopt(creds); err != nil {
		return Credentials{}, fmt.Errorf("stored credentials in %s: %w", c.cfg.StateFile, err)
	}
	c.log.Info("using stored credentials", "host_id", creds.HostID, "state_file", c.cfg.StateFile)
	if !c.cfg.Now().Before(c.refreshAt()) {
		if err := c.refresh(ctx); errors.Is(err, ErrRejected) {
			return Credentials{}, fmt.Errorf("%w: delete %s and register again with a new registration token", err, c.cfg.StateFile)
		} else if err != nil {
			c.log.Warn("refresh of stored credentials failed; retrying later", "error", err)
		}
	}
	return c.Credentials(), nil
}

// Credentials returns the current credentials.
func (c *Client) Credentials() Credentials {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.creds
}

// TLSConfig is the agent's server configuration (pki.AgentTLSConfig): TLS
// 1.3, a client certificate signed by the internal CA required, and always
// the current server certificate — a refreshed one is served from the next
// handshake on. Call after Enroll.
func (c *Client) TLSConfig() (*tls.Config, error) {
	c.mu.Lock()
	cert, ca := c.cert, c.creds.CACertPEM
	c.mu.Unlock()
	if cert == nil {
		return nil, errors.New("enroll: TLSConfig called before Enroll")
	}
	return pki.AgentTLSConfig(cert, ca)
}

// Run heartbeats (the first at once, then every HeartbeatInterval) and
// refreshes the credentials at half their life until ctx ends; it returns
// nil then and when the host was deleted (after OnDeleted). Reactions
// (docs/api.md): MaxFailures failed heartbeats in a row → PauseAll, heartbeats go
// on; 401/403 → refresh; a refresh the control plane rejects → PauseAll
// and Run returns an ErrRejected error (no more heartbeats); 404 → the
// state file is deleted and OnDeleted called.
func (c *Client) Run(ctx context.Context) error {
	beat := time.NewTimer(0)
	defer beat.Stop()
	renew := time.NewTimer(c.untilRefresh())
	defer renew.Stop()
	failures, paused := 0, false
	refreshedFor401 := false // the last heartbeat was refused and answered with a refresh
	fail := func(reason string, err error) {
		failures++
		c.log.Warn("heartbeat failed", "reason", reason, "error", err, "failures_in_a_row", failures)
		if failures >= MaxFailures && !paused {
			c.log.Error("control plane lost: pausing every capsule", "failures_in_a_row", failures)
			paused = c.pauseAll(ctx)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-renew.C:
			err := c.refresh(ctx)
			switch {
			case err == nil:
				renew.Reset(c.untilRefresh())
			case errors.Is(err, ErrRejected):
				return c.rejected(ctx, err)
			case ctx.Err() != nil:
				return nil
			default:
				c.log.Warn("credential refresh failed; retrying", "error", err)
				renew.Reset(c.cfg.HeartbeatInterval)
			}
		case <-beat.C:
			status, err := c.heartbeat(ctx)
			retried := refreshedFor401
			refreshedFor401 = false
			switch {
			case ctx.Err() != nil:
				return nil
			case err == nil && status/100 == 2:
				if failures >= MaxFailures {
					c.log.Info("control plane reachable again", "failures_in_a_row", failures)
				}
				failures, paused = 0, false
			case status == http.StatusNotFound:
				return c.deleted()
			case status == http.StatusUnauthorized || status == http.StatusForbidden:
				if retried {
					// Refused again with fresh credentials: do not loop on refreshes.
					fail("heartbeat refused with fresh credentials", err)
					break
				}
				c.log.Warn("heartbeat refused; refreshing credentials", "status", status)
				rerr := c.refresh(ctx)
				switch {
				case rerr == nil:
					renew.Reset(c.untilRefresh())
					refreshedFor401 = true
					beat.Reset(0) // report with the new token at once
					continue
				case errors.Is(rerr, ErrRejected):
					return c.rejected(ctx, rerr)
				case ctx.Err() != nil:
					return nil
				default:
					fail("refresh failed", rerr)
				}
			case err != nil:
				fail("control plane unreachable", err)
			default:
				fail(fmt.Sprintf("status %d", status), nil)
			}
			beat.Reset(c.cfg.HeartbeatInterval)
		}
	}
}

// pauseAll runs PauseAll and reports whether it succeeded.
func (c *Client) pauseAll(ctx context.Context) bool {
	if c.cfg.PauseAll == nil {
		return true
	}
	if err := c.cfg.PauseAll(ctx); err != nil {
		c.log.Error("pausing capsules failed", "error", err)
		return false
	}
	return true
}

// rejected handles credentials the control plane refuses for good.
func (c *Client) rejected(ctx context.Context, err error) error {
	c.log.Error("control plane rejected the agent's credentials: pausing every capsule and stopping heartbeats; delete the state file and register again", "state_file", c.cfg.StateFile, "error", err)
	c.pauseAll(ctx)
	return err
}

// deleted handles a host the control plane no longer knows.
func (c *Client) deleted() error {
	c.log.Warn("the control plane deleted this host: removing credentials and shutting down", "host_id", c.Credentials().HostID)
	if err := os.Remove(c.cfg.StateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Error("remove credentials", "state_file", c.cfg.StateFile, "error", err)
	}
	if c.cfg.OnDeleted != nil {
		c.cfg.OnDeleted()
	}
	return nil
}

// refreshAt is half the life of the certificate or the JWT, whichever
// ends first.
func (c *Client) refreshAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	leaf := c.cert.Leaf()
	at := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(c.creds.Token, &claims); err == nil &&
		claims.IssuedAt != nil && claims.ExpiresAt != nil {
		if t := claims.IssuedAt.Add(claims.ExpiresAt.Sub(claims.IssuedAt.Time) / 2); t.Before(at) {
			at = t
		}
	}
	return at
}

func (c *Client) untilRefresh() time.Duration {
	return max(c.refreshAt().Sub(c.cfg.Now()), 0)
}

// adopt makes creds current after checking them.
func (c *Client) adopt(creds Credentials) error {
	if !strings.HasPrefix(creds.HostID, "host-") || creds.Token == "" || creds.RefreshToken == "" {
		return errors.New("host id, token or refresh token missing")
	}
	if _, err := pki.CertPool(creds.CACertPEM); err != nil {
		return fmt.Errorf("CA certificate: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert == nil {
		cert, err := pki.NewCertificate(creds.CertPEM, creds.KeyPEM)
		if err != nil {
			return fmt.Errorf("certificate: %w", err)
		}
		c.cert = cert
	} else {
		if err := c.cert.Set(creds.CertPEM, creds.KeyPEM); err != nil {
			return fmt.Errorf("certificate: %w", err)
		}
		if !bytes.Equal(creds.CACertPEM, c.creds.CACertPEM) {
			c.log.Warn("the control plane's CA certificate changed; restart the agent to trust it")
		}
	}
	c.creds = creds
	return nil
}

// wireCredentials is the answer of register and refresh.
type wireCredentials struct {
	Host struct {
		ID string `json:"id"`
	} `json:"host"`
	Token        string `json:"token"`
	RefreshToken string `json:"refresh_token"`
	CertPEM      string `json:"cert_pem"`
	KeyPEM       string `json:"key_pem"`
	CACertPEM    string `json:"ca_cert_pem"`
}

func (w wireCredentials) credentials() Credentials {
	return Credentials{
		HostID: w.Host.ID, Token: w.Token, RefreshToken: w.RefreshToken,
		CertPEM: []byte(w.CertPEM), KeyPEM: []byte(w.KeyPEM), CACertPEM: []byte(w.CACertPEM),
	}
}

// registerRequest is the body of POST /v1/hosts/register.
type registerRequest struct {
	Token    string `json:"token"`
	Address  string `json:"address"`
	Arch     string `json:"arch,omitempty"`
	CPUCores int    `json:"cpu_cores,omitempty"`
	MemoryMB int    `json:"memory_mb,omitempty"`
	DiskGB   int    `json:"disk_gb,omitempty"`
}

// register calls POST /v1/hosts/register, retrying while the control plane
// is unreachable or failing.
func (c *Client) register(ctx context.Context) (Credentials, error) {
	body := registerRequest{
		Token: c.cfg.RegistrationToken, Address: c.cfg.Address,
		Arch: c.cfg.Specs.Arch, CPUCores: c.cfg.Specs.CPUCores, MemoryMB: c.cfg.Specs.MemoryMB, DiskGB: c.cfg.Specs.DiskGB,
	}
	backoff := time.Second
	for {
		var w wireCredentials
		status, err := c.call(ctx, "/v1/hosts/register", "", body, &w)
		switch {
		case err == nil && status/100 == 2:
			return w.credentials(), nil
		case status == http.StatusUnauthorized:
			return Credentials{}, fmt.Errorf("register: %w: %w (the registration token is invalid, used or expired: create a new one with POST /v1/hosts/{id}/token)", ErrRejected, err)
		case status/100 == 4:
			return Credentials{}, fmt.Errorf("register: %w", err)
		}
		c.log.Warn("registration failed; retrying", "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return Credentials{}, fmt.Errorf("register: %w (last error: %w)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// refresh rotates the credentials (POST /v1/hosts/auth/refresh) and stores
// them. A 4xx answer is ErrRejected.
func (c *Client) refresh(ctx context.Context) error {
	var w wireCredentials
	status, err := c.call(ctx, "/v1/hosts/auth/refresh", "", map[string]string{"refresh_token": c.Credentials().RefreshToken}, &w)
	switch {
	case err == nil && status/100 == 2:
	case status/100 == 4:
		return fmt.Errorf("refresh: %w: %w", ErrRejected, err)
	default:
		return fmt.Errorf("refresh: %w", err)
	}
	creds := w.credentials()
	if err := c.adopt(creds); err != nil {
		return fmt.Errorf("refresh answer: %w", err)
	}
	if err := c.save(creds); err != nil {
		// The old refresh token is revoked: losing these would lose the host.
		c.log.Error("store refreshed credentials", "state_file", c.cfg.StateFile, "error", err)
		return fmt.Errorf("store refreshed credentials: %w", err)
	}
	c.log.Info("credentials refreshed", "host_id", creds.HostID, "certificate_expires", c.cert.NotAfter().UTC().Format(time.RFC3339))
	return nil
}

// PoolShape names a warm pool as the agent keys it (TeamID "" for the
// built-in images) and the shape of its capsules.
type PoolShape struct {
	TeamID        string `json:"team_id"`
	Template      string `json:"template"`
	VCPUs         int    `json:"vcpus"`
	MemoryMB      int    `json:"memory_mb"`
	DiskMB        int    `json:"disk_mb"`
	AllowInternet bool   `json:"allow_internet"`
}

// PoolReport is one warm pool in a heartbeat's body.
type PoolReport struct {
	PoolShape
	Size   int    `json:"size"`
	Ready  int    `json:"ready"`
	Hits   uint64 `json:"hits"`
	Misses uint64 `json:"misses"`
}

// DesiredPool is a pool the control plane wants on this host.
type DesiredPool struct {
	PoolShape
	Name string `json:"name"` // the template's name
	Size int    `json:"size"`
}

type heartbeatRequest struct {
	Pools []PoolReport `json:"pools"`
}

type heartbeatAnswer struct {
	Pools *[]DesiredPool `json:"pools"`
}

// heartbeat calls POST /v1/hosts/{id}/heartbeat with the pool report
// (no body without Config.Pools) and applies the pools of its answer;
// status is 0 when no answer came.
func (c *Client) heartbeat(ctx context.Context) (int, error) {
	creds := c.Credentials()
	var body any
	if c.cfg.Pools != nil {
		ps := c.cfg.Pools()
		if ps == nil {
			ps = []PoolReport{}
		}
		body = heartbeatRequest{Pools: ps}
	}
	var out heartbeatAnswer
	status, err := c.call(ctx, "/v1/hosts/"+url.PathEscape(creds.HostID)+"/heartbeat", creds.Token, body, &out)
	if err == nil && out.Pools != nil && c.cfg.ApplyPools != nil {
		c.cfg.ApplyPools(ctx, *out.Pools)
	}
	return status, err
}

// apiError is the control plane's error body.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// call POSTs body (JSON; none when nil) and decodes a 2xx answer into out.
// A non-2xx answer returns its status and an error carrying its message.
func (c *Client) call(ctx context.Context, path, hostToken string, body, out any) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.String()+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if hostToken != "" {
		req.Header.Set("X-Host-Token", hostToken)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("POST %s: read answer: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e apiError
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error.Code != "" {
			msg = e.Error.Code + ": " + e.Error.Message
		}
		return resp.StatusCode, fmt.Errorf("POST %s: %d %s", path, resp.StatusCode, msg)
	}
	if out != nil && len(bytes.TrimSpace(b)) > 0 { // a 204 has no body
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("POST %s: decode answer: %w", path, err)
		}
	}
	return resp.StatusCode, nil
}
