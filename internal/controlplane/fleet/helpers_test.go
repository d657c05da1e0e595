package fleet_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/fleet"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// env is a control-plane test environment with the fleet service registered.
type env struct {
	*cptest.Env
	svc   *fleet.Service
	admin cptest.Account
}

func newEnv(t *testing.T, mutate ...func(*fleet.Config)) *env {
	t.Helper()
	e := cptest.New(t)
	cfg := fleet.Config{Store: e.Store, Signer: e.Signer, Log: slog.New(slog.DiscardHandler)}
	for _, m := range mutate {
		m(&cfg)
	}
	svc, err := fleet.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	svc.Register(e.Router)
	return &env{Env: e, svc: svc, admin: e.NewAccount(t, "admin", true)}
}

// want fails the test unless res has status (and, for errors, code).
func want(t *testing.T, res cptest.Response, status int, code string) {
	t.Helper()
	if res.Status != status || res.ErrorCode() != code {
		t.Fatalf("got %d %q (%s), want %d %q", res.Status, res.ErrorCode(), res.Body, status, code)
	}
}

// createHost creates a host as jwt and returns it with its registration token.
func (e *env) createHost(t *testing.T, jwt string, body map[string]any) fleet.HostWithToken {
	t.Helper()
	res := e.Do(t, "POST", "/v1/hosts", cptest.Bearer(jwt), body)
	want(t, res, 201, "")
	var out fleet.HostWithToken
	res.JSON(t, &out)
	return out
}

// registerBody is a registration request with specs.
func registerBody(token, address string) map[string]any {
	return map[string]any{"token": token, "address": address, "arch": "amd64", "cpu_cores": 4, "memory_mb": 8192, "disk_gb": 100}
}

// register registers a host's agent at address.
func (e *env) register(t *testing.T, token, address string) fleet.Credentials {
	t.Helper()
	res := e.Do(t, "POST", "/v1/hosts/register", cptest.Cred{}, registerBody(token, address))
	want(t, res, 201, "")
	var out fleet.Credentials
	res.JSON(t, &out)
	return out
}

// onlineHost creates a regular host (as the platform admin), registers it at address and marks it
// online as if the control plane had reached its agent.
func (e *env) onlineHost(t *testing.T, address string) fleet.Credentials {
	t.Helper()
	h := e.createHost(t, e.admin.JWT, map[string]any{"type": "regular"})
	c := e.register(t, h.RegistrationToken, address)
	e.markOnline(t, c.Host.ID)
	return c
}

// markOnline makes registered host id online directly in the database.
func (e *env) markOnline(t *testing.T, id string) {
	t.Helper()
	if n, err := e.Store.MarkHostOnline(t.Context(), hostUUID(t, id)); err != nil || n != 1 {
		t.Fatalf("mark host %s online: %d rows, %v", id, n, err)
	}
}

// hostUUID parses a host id.
func hostUUID(t *testing.T, id string) uuid.UUID {
	t.Helper()
	u, err := ids.Host.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// addCapsule inserts a capsule of team on host in status.
func (e *env) addCapsule(t *testing.T, team, host uuid.UUID, status string, memoryMB int32) uuid.UUID {
	t.Helper()
	return e.addCapsuleCPU(t, team, host, status, memoryMB, 1)
}

// addCapsuleCPU is addCapsule with vcpus.
func (e *env) addCapsuleCPU(t *testing.T, team, host uuid.UUID, status string, memoryMB, vcpus int32) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	tmpl := uuid.MustParse("00000000-0000-0000-0000-000000000002")
	c, err := e.Store.CreateCapsule(ctx, db.CreateCapsuleParams{
		TeamID: team, TemplateID: &tmpl, TemplateName: "minimal", HostID: &host,
		VCPUs: vcpus, MemoryMB: memoryMB, DiskMB: 1024, DefaultUser: "root", AllowInternet: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if status != store.CapsulePending {
		if _, err := e.Store.UpdateCapsuleStatus(ctx, db.UpdateCapsuleStatusParams{ID: c.ID, Status: status, FromStatuses: []string{store.CapsulePending}}); err != nil {
			t.Fatal(err)
		}
	}
	return c.ID
}

// capsuleStatus reads a capsule's status.
func (e *env) capsuleStatus(t *testing.T, id uuid.UUID) string {
	t.Helper()
	c, err := e.Store.GetCapsuleByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return c.Status
}

// hostStatus reads a host's status.
func (e *env) hostStatus(t *testing.T, id string) string {
	t.Helper()
	h, err := e.Store.GetHost(context.Background(), hostUUID(t, id))
	if err != nil {
		t.Fatal(err)
	}
	return h.Status
}

// auditActions returns the actions recorded for a resource id, oldest first.
func (e *env) auditActions(t *testing.T, resourceID string) []string {
	t.Helper()
	rows, err := e.Store.Pool().Query(context.Background(),
		`SELECT action FROM audit_logs WHERE resource_id = $1 ORDER BY created_at, id`, resourceID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// errorFields decodes the fields of an error body.
func errorFields(t *testing.T, res cptest.Response) map[string]any {
	t.Helper()
	var body struct {
		Error map[string]any `json:"error"`
	}
	if err := json.Unmarshal(res.Body, &body); err != nil {
		t.Fatalf("decode %s: %v", res.Body, err)
	}
	return body.Error
}

func hostPath(id string, rest ...string) string {
	p := "/v1/hosts/" + id
	for _, r := range rest {
		p += "/" + r
	}
	return p
}
