package fleet_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/fleet"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/pki"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

// checkCredentials verifies what an agent receives for host id at address.
func checkCredentials(t *testing.T, e *env, c fleet.Credentials, id, ip string) {
	t.Helper()
	claims, err := e.Signer.ParseHost(c.Token)
	if err != nil || claims.HostID != id {
		t.Fatalf("host token: %+v, %v", claims, err)
	}
	if d := claims.ExpiresAt.Sub(claims.IssuedAt); d != auth.HostTokenTTL {
		t.Fatalf("host token valid for %v", d)
	}
	if !hex64.MatchString(c.RefreshToken) {
		t.Fatalf("refresh token %q", c.RefreshToken)
	}
	if c.CACertPEM != string(e.svc.CACertPEM()) {
		t.Fatal("ca_cert_pem is not the internal CA")
	}
	cert, err := pki.ParseCertificatePEM([]byte(c.CertPEM))
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != id || len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(net.ParseIP(ip)) {
		t.Fatalf("certificate CN %q, IPs %v", cert.Subject.CommonName, cert.IPAddresses)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve.Params().Name != "P-256" {
		t.Fatalf("certificate key %T", cert.PublicKey)
	}
	if d := time.Until(cert.NotAfter); d < pki.AgentCertTTL-time.Minute || d > pki.AgentCertTTL {
		t.Fatalf("certificate expires in %v", d)
	}
	pool, err := pki.CertPool([]byte(c.CACertPEM))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("certificate does not chain to the CA: %v", err)
	}
	if _, err := tls.X509KeyPair([]byte(c.CertPEM), []byte(c.KeyPEM)); err != nil {
		t.Fatalf("key does not match the certificate: %v", err)
	}
}

func TestRegister(t *testing.T) {
	e := newEnv(t)
	created := e.createHost(t, e.admin.JWT, map[string]any{"type": "regular", "tags": []string{"x"}})
	id := created.Host.ID
	tok := created.RegistrationToken

	// Bad requests change nothing: the token still works afterwards.
	bad := []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"no token", map[string]any{"address": "127.0.0.1:7000"}, 401, "unauthorized"},
		{"malformed token", map[string]any{"token": "abc", "address": "127.0.0.1:7000"}, 401, "unauthorized"},
		{"unknown token", map[string]any{"token": strings.Repeat("a", 64), "address": "127.0.0.1:7000"}, 401, "unauthorized"},
		{"missing address", map[string]any{"token": tok}, 400, "invalid_request"},
		{"address without port", map[string]any{"token": tok, "address": "127.0.0.1"}, 400, "invalid_request"},
		{"bad port", map[string]any{"token": tok, "address": "127.0.0.1:99999"}, 400, "invalid_request"},
		{"unspecified address", map[string]any{"token": tok, "address": "0.0.0.0:7000"}, 400, "invalid_request"},
		{"url as address", map[string]any{"token": tok, "address": "https://127.0.0.1:7000"}, 400, "invalid_request"},
		{"negative memory", map[string]any{"token": tok, "address": "127.0.0.1:7000", "memory_mb": -1}, 400, "invalid_request"},
		{"huge disk", map[string]any{"token": tok, "address": "127.0.0.1:7000", "disk_gb": int64(1) << 40}, 400, "invalid_request"},
		{"wrong type", map[string]any{"token": tok, "address": "127.0.0.1:7000", "cpu_cores": "4"}, 400, "invalid_request"},
		{"not json", []byte("nope"), 400, "invalid_request"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			want(t, e.Do(t, "POST", "/v1/hosts/register", cptest.Cred{}, tt.body), tt.status, tt.code)
		})
	}
	if st := e.hostStatus(t, id); st != store.HostPending {
		t.Fatalf("host is %s after bad registrations", st)
	}

	c := e.register(t, tok, "127.0.0.1:7000")
	h := c.Host
	if h.ID != id || h.Status != "pending" || h.Address != "127.0.0.1:7000" || h.Arch != "amd64" || h.CPUCores != 4 ||
		h.MemoryMB != 8192 || h.DiskGB != 100 || !slices.Equal(h.Tags, []string{"x"}) {
		t.Fatalf("registered host = %+v", h)
	}
	checkCredentials(t, e, c, id, "127.0.0.1")

	// Single use.
	want(t, e.Do(t, "POST", "/v1/hosts/register", cptest.Cred{}, registerBody(tok, "127.0.0.1:7000")), 401, "unauthorized")
	// A registered host gets no new token.
	want(t, e.Do(t, "POST", hostPath(id, "token"), cptest.Bearer(e.admin.JWT), nil), 409, "invalid_state")

	// IPv6: the certificate names the IP.
	c6 := e.register(t, e.createHost(t, e.admin.JWT, map[string]any{"type": "regular"}).RegistrationToken, "[::1]:7001")
	if c6.Host.Address != "[::1]:7001" {
		t.Fatalf("address %q", c6.Host.Address)
	}
	checkCredentials(t, e, c6, c6.Host.ID, "::1")
	// Without specs they are omitted.
	bare := e.createHost(t, e.admin.JWT, map[string]any{"type": "regular"})
	res := e.Do(t, "POST", "/v1/hosts/register", cptest.Cred{}, map[string]any{"token": bare.RegistrationToken, "address": "127.0.0.2:7000"})
	want(t, res, 201, "")
	var raw map[string]any
	res.JSON(t, &raw)
	for _, k := range []string{"arch", "cpu_cores", "memory_mb", "disk_gb"} {
		if _, ok := raw["host"].(map[string]any)[k]; ok {
			t.Fatalf("%s present without specs: %v", k, raw["host"])
		}
	}
	for _, k := range []string{"token", "refresh_token", "cert_pem", "key_pem", "ca_cert_pem"} {
		if _, ok := raw[k]; !ok {
			t.Fatalf("%s missing", k)
		}
	}
}

func TestRegistrationTokenLifecycle(t *testing.T) {
	e := newEnv(t)
	b := e.byocTeam(t, "byoc")
	created := e.createHost(t, b.owner.JWT, map[string]any{"type": "byoc"})
	id := created.Host.ID

	// A new token replaces the unused one.
	res := e.Do(t, "POST", hostPath(id, "token"), cptest.Bearer(b.teamAdminJWT), nil)
	want(t, res, 201, "")
	var renewed fleet.HostWithToken
	res.JSON(t, &renewed)
	if renewed.Host.ID != id || renewed.Host.Status != "pending" || !hex64.MatchString(renewed.RegistrationToken) || renewed.RegistrationToken == created.RegistrationToken {
		t.Fatalf("new token = %+v", renewed)
	}
	want(t, e.Do(t, "POST", "/v1/hosts/register", cptest.Cred{}, registerBody(created.RegistrationToken, "127.0.0.1:7000")), 401, "unauthorized")
	want(t, e.Do(t, "POST", hostPath(id, "token"), cptest.Bearer(b.memberJWT), nil), 403, "forbidden")
	want(t, e.Do(t, "POST", hostPath(id, "token"), cptest.Bearer(e.NewAccount(t, "x", false).JWT), nil), 404, "not_found")

	// Expired tokens are refused.
	if _, err := e.Store.Pool().Exec(context.Background(),
		`UPDATE host_registration_tokens SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	want(t, e.Do(t, "POST", "/v1/hosts/register", cptest.Cred{}, registerBody(renewed.RegistrationToken, "127.0.0.1:7000")), 401, "unauthorized")

	// A fresh one works.
	res = e.Do(t, "POST", hostPath(id, "token"), cptest.Bearer(b.owner.JWT), nil)
	want(t, res, 201, "")
	res.JSON(t, &renewed)
	c := e.register(t, renewed.RegistrationToken, "127.0.0.1:7000")
	if c.Host.TeamID != b.owner.TeamID || c.Host.Type != "byoc" {
		t.Fatalf("host = %+v", c.Host)
	}
}

func TestRefresh(t *testing.T) {
	e := newEnv(t)
	first := e.onlineHost(t, "127.0.0.5:7000")
	id := first.Host.ID

	res := e.Do(t, "POST", "/v1/hosts/auth/refresh", cptest.Cred{}, map[string]string{"refresh_token": first.RefreshToken})
	want(t, res, 200, "")
	var second fleet.Credentials
	res.JSON(t, &second)
	if second.Host.ID != id || second.RefreshToken == first.RefreshToken || second.CertPEM == first.CertPEM {
		t.Fatalf("refresh did not rotate: %+v", second.Host)
	}
	checkCredentials(t, e, second, id, "127.0.0.5")

	// The old refresh token is revoked; the new one rotates again.
	want(t, e.Do(t, "POST", "/v1/hosts/auth/refresh", cptest.Cred{}, map[string]string{"refresh_token": first.RefreshToken}), 401, "unauthorized")
	res = e.Do(t, "POST", "/v1/hosts/auth/refresh", cptest.Cred{}, map[string]string{"refresh_token": second.RefreshToken})
	want(t, res, 200, "")
	var third fleet.Credentials
	res.JSON(t, &third)
	want(t, e.Do(t, "POST", "/v1/hosts/auth/refresh", cptest.Cred{}, map[string]string{"refresh_token": second.RefreshToken}), 401, "unauthorized")
	// The new JWT works for heartbeats.
	want(t, e.Do(t, "POST", hostPath(id, "heartbeat"), cptest.Cred{HostToken: third.Token}, nil), 204, "")

	for name, body := range map[string]any{
		"empty":     map[string]string{},
		"malformed": map[string]string{"refresh_token": "zz"},
		"unknown":   map[string]string{"refresh_token": strings.Repeat("b", 64)},
		"reg token": map[string]string{"refresh_token": e.createHost(t, e.admin.JWT, map[string]any{"type": "regular"}).RegistrationToken},
	} {
		t.Run(name, func(t *testing.T) {
			want(t, e.Do(t, "POST", "/v1/hosts/auth/refresh", cptest.Cred{}, body), 401, "unauthorized")
		})
	}
	want(t, e.Do(t, "POST", "/v1/hosts/auth/refresh", cptest.Cred{}, []byte("[")), 400, "invalid_request")

	// Expired refresh tokens are refused.
	if _, err := e.Store.Pool().Exec(context.Background(),
		`UPDATE host_refresh_tokens SET created_at = now() - interval '61 days', expires_at = now() - interval '1 day'`); err != nil {
		t.Fatal(err)
	}
	want(t, e.Do(t, "POST", "/v1/hosts/auth/refresh", cptest.Cred{}, map[string]string{"refresh_token": third.RefreshToken}), 401, "unauthorized")
}

func TestHeartbeat(t *testing.T) {
	e := newEnv(t)
	a := e.onlineHost(t, "127.0.0.1:7000")
	b := e.onlineHost(t, "127.0.0.2:7000")
	ctx := context.Background()

	before, err := e.Store.GetHost(ctx, hostUUID(t, a.Host.ID))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	want(t, e.Do(t, "POST", hostPath(a.Host.ID, "heartbeat"), cptest.Cred{HostToken: a.Token}, nil), 204, "")
	after, err := e.Store.GetHost(ctx, hostUUID(t, a.Host.ID))
	if err != nil {
		t.Fatal(err)
	}
	if !after.LastHeartbeatAt.After(*before.LastHeartbeatAt) {
		t.Fatal("heartbeat not recorded")
	}

	want(t, e.Do(t, "POST", hostPath(a.Host.ID, "heartbeat"), cptest.Cred{}, nil), 401, "unauthorized")
	want(t, e.Do(t, "POST", hostPath(a.Host.ID, "heartbeat"), cptest.Cred{HostToken: "garbage"}, nil), 401, "unauthorized")
	// A user JWT is not a host token, in either header.
	want(t, e.Do(t, "POST", hostPath(a.Host.ID, "heartbeat"), cptest.Cred{HostToken: e.admin.JWT}, nil), 401, "unauthorized")
	want(t, e.Do(t, "POST", hostPath(a.Host.ID, "heartbeat"), cptest.Bearer(e.admin.JWT), nil), 401, "unauthorized")
	// Another host's token.
	want(t, e.Do(t, "POST", hostPath(a.Host.ID, "heartbeat"), cptest.Cred{HostToken: b.Token}, nil), 403, "forbidden")
	want(t, e.Do(t, "POST", hostPath("host-bad", "heartbeat"), cptest.Cred{HostToken: b.Token}, nil), 403, "forbidden")
	// A host token is not a user credential.
	want(t, e.Do(t, "GET", "/v1/hosts", cptest.Bearer(a.Token), nil), 401, "unauthorized")

	// Unreachable → online, audited.
	if _, err := e.Store.SetHostStatus(ctx, db.SetHostStatusParams{ID: hostUUID(t, a.Host.ID), Status: store.HostUnreachable}); err != nil {
		t.Fatal(err)
	}
	want(t, e.Do(t, "POST", hostPath(a.Host.ID, "heartbeat"), cptest.Cred{HostToken: a.Token}, nil), 204, "")
	if st := e.hostStatus(t, a.Host.ID); st != store.HostOnline {
		t.Fatalf("host is %s", st)
	}
	if got := e.auditActions(t, a.Host.ID); !slices.Equal(got, []string{"host.create", "host.up"}) {
		t.Fatalf("audit = %v", got)
	}

	// Deleted host → 404.
	want(t, e.Do(t, "DELETE", hostPath(b.Host.ID), cptest.Bearer(e.admin.JWT), nil), 204, "")
	want(t, e.Do(t, "POST", hostPath(b.Host.ID, "heartbeat"), cptest.Cred{HostToken: b.Token}, nil), 404, "not_found")
}
