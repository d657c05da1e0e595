// Package enrolltest is an in-test control plane for host agents: the
// register, refresh and heartbeat routes of docs/api.md over an
// httptest server, issuing real certificates from its own internal CA and
// HS256 host JWTs. Tests steer it (heartbeat answers, deletion) and read
// what agents sent.
package enrolltest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/wrenn/wrenn/internal/pki"
)

// HostID is the id of the one host the control plane knows.
const HostID = "host-0000000000000000000000001"

// RegisterRequest is a registration as received.
type RegisterRequest struct {
	Token    string `json:"token"`
	Address  string `json:"address"`
	Arch     string `json:"arch"`
	CPUCores int    `json:"cpu_cores"`
	MemoryMB int    `json:"memory_mb"`
	DiskGB   int    `json:"disk_gb"`
}

// ControlPlane serves the host routes for one host.
type ControlPlane struct {
	URL    string
	Server *httptest.Server
	CA     *pki.CA
	// RegistrationToken is the host's one-time token.
	RegistrationToken string

	mu            sync.Mutex
	tokenUsed     bool
	tokens        map[string]bool // host JWTs currently accepted
	refreshToken  string          // the one valid refresh token
	deleted       bool
	beatStatus    int // forced heartbeat answer; 0 = per contract
	refreshStatus int // forced refresh answer; 0 = per contract
	registrations []RegisterRequest
	heartbeats    []string // X-Host-Token of each heartbeat
	beatBodies    []string // the body of each heartbeat
	pools         any      // the pools of the heartbeats' answer; nil: 204
	refreshes     int
	address       string
}

// New starts a control plane; it stops when the test ends.
func New(t testing.TB) *ControlPlane {
	t.Helper()
	ca, err := pki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	cp := &ControlPlane{CA: ca, RegistrationToken: randomHex(32), tokens: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/hosts/register", cp.register)
	mux.HandleFunc("POST /v1/hosts/auth/refresh", cp.refresh)
	mux.HandleFunc("POST /v1/hosts/{id}/heartbeat", cp.heartbeat)
	cp.Server = httptest.NewServer(mux)
	cp.URL = cp.Server.URL
	t.Cleanup(cp.Server.Close)
	return cp
}

// SetHeartbeatStatus forces every heartbeat's answer (0: answer per
// contract).
func (cp *ControlPlane) SetHeartbeatStatus(status int) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.beatStatus = status
}

// SetRefreshStatus forces every refresh's answer (0: per contract).
func (cp *ControlPlane) SetRefreshStatus(status int) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.refreshStatus = status
}

// RevokeTokens makes every host JWT issued so far invalid (heartbeats → 401
// until the agent refreshes).
func (cp *ControlPlane) RevokeTokens() {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	clear(cp.tokens)
}

// Delete deletes the host: heartbeats → 404, refresh → 401.
func (cp *ControlPlane) Delete() {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.deleted = true
}

// Registrations returns the registrations received.
func (cp *ControlPlane) Registrations() []RegisterRequest {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]RegisterRequest(nil), cp.registrations...)
}

// SetPools makes the heartbeats' answer name pools (a JSON array, as the
// control plane's desired pools); nil: answer 204 with no body.
func (cp *ControlPlane) SetPools(pools any) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.pools = pools
}

// HeartbeatBodies returns the body of every heartbeat received ("" for
// none).
func (cp *ControlPlane) HeartbeatBodies() []string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]string(nil), cp.beatBodies...)
}

// Heartbeats returns the X-Host-Token of every heartbeat received.
func (cp *ControlPlane) Heartbeats() []string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]string(nil), cp.heartbeats...)
}

// Refreshes returns how many refreshes succeeded.
func (cp *ControlPlane) Refreshes() int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.refreshes
}

// RefreshToken returns the refresh token currently valid.
func (cp *ControlPlane) RefreshToken() string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.refreshToken
}

// TokenValid reports whether a host JWT is accepted.
func (cp *ControlPlane) TokenValid(tok string) bool {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.tokens[tok]
}

func (cp *ControlPlane) register(w http.ResponseWriter, r *http.Request) {
	var req RegisterRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "invalid JSON body")
		return
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.registrations = append(cp.registrations, req)
	if req.Token != cp.RegistrationToken || cp.tokenUsed {
		writeError(w, http.StatusUnauthorized, "unauthorized", "invalid, used or expired registration token")
		return
	}
	if req.Address == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "address is required")
		return
	}
	cp.tokenUsed = true
	cp.address = req.Address
	cp.issue(w, http.StatusCreated)
}

func (cp *ControlPlane) refresh(w http.ResponseWriter, r *http.Request) {
	var req struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "invalid JSON body")
		return
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.refreshStatus != 0 {
		writeError(w, cp.refreshStatus, "forced", "forced refresh answer")
		return
	}
	if cp.deleted || req.RefreshToken == "" || req.RefreshToken != cp.refreshToken {
		writeError(w, http.StatusUnauthorized, "unauthorized", "invalid refresh token")
		return
	}
	cp.refreshes++
	cp.issue(w, http.StatusOK)
}

// issue answers with fresh credentials; the caller holds mu.
func (cp *ControlPlane) issue(w http.ResponseWriter, status int) {
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"typ": "host", "host_id": HostID, "sub": HostID, "jti": randomHex(8),
		"iat": now.Unix(), "exp": now.Add(7 * 24 * time.Hour).Unix(),
	}).SignedString([]byte("enrolltest-secret-enrolltest-secret"))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal_error", err.Error())
		return
	}
	kp, err := cp.CA.IssueAgent(HostID, cp.address)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal_error", err.Error())
		return
	}
	clear(cp.tokens)
	cp.tokens[tok] = true
	cp.refreshToken = randomHex(32)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"host":          map[string]any{"id": HostID, "type": "regular", "status": "online", "address": cp.address},
		"token":         tok,
		"refresh_token": cp.refreshToken,
		"cert_pem":      string(kp.CertPEM),
		"key_pem":       string(kp.KeyPEM),
		"ca_cert_pem":   string(cp.CA.CertPEM()),
	})
}

func (cp *ControlPlane) heartbeat(w http.ResponseWriter, r *http.Request) {
	tok := r.Header.Get("X-Host-Token")
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.heartbeats = append(cp.heartbeats, tok)
	cp.beatBodies = append(cp.beatBodies, string(body))
	switch {
	case cp.beatStatus != 0:
		writeError(w, cp.beatStatus, "forced", "forced heartbeat answer")
	case !cp.tokens[tok] && !cp.deleted:
		writeError(w, http.StatusUnauthorized, "unauthorized", "invalid host token")
	case r.PathValue("id") != HostID && !cp.deleted:
		writeError(w, http.StatusForbidden, "forbidden", "host id does not match the token")
	case cp.deleted:
		writeError(w, http.StatusNotFound, "not_found", "host not found")
	case cp.pools != nil:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"pools": cp.pools})
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
