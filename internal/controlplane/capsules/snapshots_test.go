package capsules_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"connectrpc.com/connect"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

// setTemplateDefaults gives a template a default user and env (as a build would).
func (f *fixture) setTemplateDefaults(t *testing.T, name, user, env string) {
	t.Helper()
	if _, err := f.env.Store.Pool().Exec(context.Background(),
		`UPDATE templates SET default_user = $2, default_env = $3::jsonb WHERE name = $1`, name, user, env); err != nil {
		t.Fatal(err)
	}
}

// startSleeper starts a tagged background process in a capsule through the agent.
func (f *fixture) startSleeper(t *testing.T, id string) {
	t.Helper()
	if _, err := f.agent.API.StartBackground(context.Background(), connect.NewRequest(&hav1.StartBackgroundRequest{
		SandboxId: id, Cmd: "/bin/sleep", Args: []string{"1000"}, Tag: "sleeper",
	})); err != nil {
		t.Fatal(err)
	}
}

// sleeperRuns reports whether the capsule's "sleeper" process runs.
func (f *fixture) sleeperRuns(t *testing.T, id string) bool {
	t.Helper()
	res, err := f.agent.API.ListProcesses(context.Background(), connect.NewRequest(&hav1.ListProcessesRequest{SandboxId: id}))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Msg.GetProcesses() {
		if p.GetTag() == "sleeper" && p.GetStatus() == "running" {
			return true
		}
	}
	return false
}

// templateDirs lists the template directories the agent holds for a team.
func (f *fixture) templateDirs(t *testing.T, team string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(f.agent.DataDir, "templates", team))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func templateNames(ts []capsules.Template) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Name)
	}
	slices.Sort(out)
	return out
}

func TestSnapshots(t *testing.T) {
	f := newFixture(t, true)
	key, bob := cptest.Key(f.alice.APIKey), cptest.Key(f.bob.APIKey)
	f.setTemplateDefaults(t, "minimal", "user", `{"WRENN_TEST":"from-template"}`)

	src := f.create(t, key, map[string]any{"template": "minimal", "memory_mb": 256})
	if out := f.exec(t, src.ID, `id -un; echo "$WRENN_TEST"; echo kept > /tmp/marker`); out != "user\nfrom-template" {
		t.Fatalf("template defaults in a new capsule: %q", out)
	}
	f.startSleeper(t, src.ID)

	// Bad requests change nothing.
	f.wantError(t, http.StatusBadRequest, "invalid_request", "capsule_id is required", http.MethodPost, "/v1/snapshots", key, map[string]any{"name": "x"})
	f.wantError(t, http.StatusBadRequest, "invalid_request", "invalid JSON body", http.MethodPost, "/v1/snapshots", key, nil)
	f.wantError(t, http.StatusBadRequest, "invalid_request", "invalid sandbox ID", http.MethodPost, "/v1/snapshots", key, map[string]any{"capsule_id": "cl-x"})
	f.wantError(t, http.StatusBadRequest, "invalid_request", "", http.MethodPost, "/v1/snapshots", key, map[string]any{"capsule_id": src.ID, "name": "-bad"})
	f.wantError(t, http.StatusBadRequest, "invalid_request", "", http.MethodPost, "/v1/snapshots?overwrite=maybe", key, map[string]any{"capsule_id": src.ID})
	f.wantError(t, http.StatusConflict, "name_reserved", "", http.MethodPost, "/v1/snapshots", key, map[string]any{"capsule_id": src.ID, "name": "minimal"})
	f.wantError(t, http.StatusNotFound, "not_found", "sandbox not found", http.MethodPost, "/v1/snapshots", bob, map[string]any{"capsule_id": src.ID})
	if got := f.get(t, key, src.ID); got.Status != store.CapsuleRunning {
		t.Fatalf("capsule after rejected snapshots: %s", got.Status)
	}

	// Snapshot a running capsule (named through the sandbox_id alias): it is paused and stays paused.
	var tpl capsules.Template
	f.do(t, http.StatusCreated, http.MethodPost, "/v1/snapshots", key, map[string]any{"sandbox_id": src.ID, "name": "snap1"}).JSON(t, &tpl)
	if tpl.Name != "snap1" || tpl.Type != "snapshot" || tpl.VCPUs == nil || *tpl.VCPUs != 1 || tpl.MemoryMB == nil ||
		*tpl.MemoryMB != 256 || tpl.SizeBytes <= 0 || tpl.Platform || tpl.DefaultUser != "user" ||
		tpl.DefaultEnv["WRENN_TEST"] != "from-template" || tpl.TeamID != "" || tpl.CreatedAt.IsZero() {
		t.Fatalf("snapshot template: %+v", tpl)
	}
	if got := f.get(t, key, src.ID); got.Status != store.CapsulePaused {
		t.Fatalf("capsule after snapshot: %s", got.Status)
	}
	if n := f.audits(t, "template.snapshot", "snap1", "api_key"); n != 1 {
		t.Errorf("template.snapshot audit entries: %d", n)
	}
	f.wantError(t, http.StatusConflict, "template_name_taken", "", http.MethodPost, "/v1/snapshots", key, map[string]any{"capsule_id": src.ID, "name": "snap1"})
	// overwrite=true replaces it (from the paused capsule); the old files leave the host.
	f.do(t, http.StatusCreated, http.MethodPost, "/v1/snapshots?overwrite=true", key, map[string]any{"capsule_id": src.ID, "name": "snap1"}).JSON(t, &tpl)
	if dirs := f.templateDirs(t, f.alice.Team.String()); len(dirs) != 1 {
		t.Fatalf("template directories after overwrite: %v", dirs)
	}
	// A generated name.
	var gen capsules.Template
	f.do(t, http.StatusCreated, http.MethodPost, "/v1/snapshots", cptest.Bearer(f.alice.JWT), map[string]any{"capsule_id": src.ID}).JSON(t, &gen)
	if !regexp.MustCompile(`^template-[0-9a-f]{8}$`).MatchString(gen.Name) {
		t.Fatalf("generated name %q", gen.Name)
	}

	// Listings: the team's and the platform's, by type.
	var list []capsules.Template
	f.do(t, http.StatusOK, http.MethodGet, "/v1/snapshots", key, nil).JSON(t, &list)
	if got := templateNames(list); !slices.Equal(got, []string{"base", "minimal", "snap1", gen.Name}) {
		t.Fatalf("templates: %v", got)
	}
	f.do(t, http.StatusOK, http.MethodGet, "/v1/snapshots?type=snapshot", key, nil).JSON(t, &list)
	if got := templateNames(list); !slices.Equal(got, []string{"snap1", gen.Name}) {
		t.Fatalf("snapshot templates: %v", got)
	}
	f.do(t, http.StatusOK, http.MethodGet, "/v1/snapshots?type=base", key, nil).JSON(t, &list)
	if got := templateNames(list); !slices.Equal(got, []string{"base", "minimal"}) || !list[0].Platform || list[0].DefaultEnv == nil {
		t.Fatalf("base templates: %+v", list)
	}
	f.wantError(t, http.StatusBadRequest, "invalid_request", "", http.MethodGet, "/v1/snapshots?type=disk", key, nil)
	f.do(t, http.StatusOK, http.MethodGet, "/v1/snapshots", bob, nil).JSON(t, &list)
	if got := templateNames(list); !slices.Equal(got, []string{"base", "minimal"}) {
		t.Fatalf("bob's templates: %v", got)
	}
	f.wantError(t, http.StatusNotFound, "not_found", "template not found", http.MethodPost, "/v1/capsules", bob, map[string]any{"template": "snap1"})

	// A capsule from the snapshot: the template's size and defaults, the captured processes and files.
	clone := f.create(t, key, map[string]any{"template": "snap1", "vcpus": 2, "memory_mb": 1024})
	if clone.Template != "snap1" || clone.VCPUs != 1 || clone.MemoryMB != 256 {
		t.Fatalf("clone: %+v", clone)
	}
	if out := f.exec(t, clone.ID, `id -un; echo "$WRENN_TEST"; cat /tmp/marker`); out != "user\nfrom-template\nkept" {
		t.Fatalf("clone state: %q", out)
	}
	if !f.sleeperRuns(t, clone.ID) {
		t.Fatal("the background process did not continue in the clone")
	}

	// The source resumes with its defaults and its process.
	f.do(t, http.StatusOK, http.MethodPost, "/v1/capsules/"+src.ID+"/resume", key, nil)
	if out := f.exec(t, src.ID, `id -un; echo "$WRENN_TEST"`); out != "user\nfrom-template" || !f.sleeperRuns(t, src.ID) {
		t.Fatalf("resumed source: %q", out)
	}
	f.do(t, http.StatusNoContent, http.MethodDelete, "/v1/capsules/"+src.ID, key, nil)
	f.wantError(t, http.StatusConflict, "invalid_state", "sandbox is not running (status: stopped)", http.MethodPost, "/v1/snapshots", key, map[string]any{"capsule_id": src.ID})

	// Deletion: from the host and the database; capsules made from it keep working.
	f.do(t, http.StatusNoContent, http.MethodDelete, "/v1/snapshots/snap1", key, nil)
	f.do(t, http.StatusNoContent, http.MethodDelete, "/v1/snapshots/"+gen.Name, cptest.Bearer(f.alice.JWT), nil)
	if dirs := f.templateDirs(t, f.alice.Team.String()); len(dirs) != 0 {
		t.Fatalf("template directories after delete: %v", dirs)
	}
	f.wantError(t, http.StatusNotFound, "not_found", "template not found", http.MethodDelete, "/v1/snapshots/snap1", key, nil)
	f.wantError(t, http.StatusNotFound, "not_found", "template not found", http.MethodPost, "/v1/capsules", key, map[string]any{"template": "snap1"})
	f.wantError(t, http.StatusForbidden, "forbidden", "", http.MethodDelete, "/v1/snapshots/minimal", key, nil)
	f.wantError(t, http.StatusForbidden, "forbidden", "", http.MethodDelete, "/v1/snapshots/base", key, nil)
	if n := f.audits(t, "template.delete", "snap1", ""); n != 1 {
		t.Errorf("template.delete audit entries: %d", n)
	}
	if out := f.exec(t, clone.ID, "cat /tmp/marker"); out != "kept" {
		t.Fatalf("clone after template deletion: %q", out)
	}

	// Team deletion removes the team's templates from the hosts and the database.
	f.do(t, http.StatusCreated, http.MethodPost, "/v1/snapshots", key, map[string]any{"capsule_id": clone.ID, "name": "last"})
	if err := f.svc.DeleteTeamTemplates(context.Background(), f.alice.Team); err != nil {
		t.Fatal(err)
	}
	f.do(t, http.StatusOK, http.MethodGet, "/v1/snapshots", key, nil).JSON(t, &list)
	if got := templateNames(list); !slices.Equal(got, []string{"base", "minimal"}) {
		t.Fatalf("templates after team teardown: %v", got)
	}
	if dirs := f.templateDirs(t, f.alice.Team.String()); len(dirs) != 0 {
		t.Fatalf("template directories after team teardown: %v", dirs)
	}
	f.do(t, http.StatusNoContent, http.MethodDelete, "/v1/capsules/"+clone.ID, key, nil)
}

func TestAdminSnapshot(t *testing.T) {
	f := newFixture(t, true)
	admin, key := cptest.Bearer(f.admin.JWT), cptest.Key(f.alice.APIKey)
	platform := ids.Team.Format(store.PlatformTeamID)

	var c capsules.Capsule
	f.do(t, http.StatusCreated, http.MethodPost, "/v1/admin/capsules", admin, map[string]any{"template": "minimal"}).JSON(t, &c)
	f.exec(t, c.ID, "echo platform > /tmp/p")
	f.wantError(t, http.StatusForbidden, "forbidden", "", http.MethodPost, "/v1/admin/capsules/"+c.ID+"/snapshot", cptest.Bearer(f.alice.JWT), nil)
	f.wantError(t, http.StatusForbidden, "forbidden", "", http.MethodPost, "/v1/admin/capsules/"+c.ID+"/snapshot", admin, map[string]any{"name": "base"})
	f.wantError(t, http.StatusBadRequest, "invalid_request", "", http.MethodPost, "/v1/admin/capsules/"+c.ID+"/snapshot", admin, map[string]any{"name": "a b"})

	// The platform template is created and the capsule destroyed.
	var tpl capsules.Template
	f.do(t, http.StatusCreated, http.MethodPost, "/v1/admin/capsules/"+c.ID+"/snapshot", admin, map[string]any{"name": "plat1"}).JSON(t, &tpl)
	if tpl.Name != "plat1" || !tpl.Platform || tpl.TeamID != platform || tpl.Type != "snapshot" {
		t.Fatalf("platform template: %+v", tpl)
	}
	var got capsules.Capsule
	f.do(t, http.StatusOK, http.MethodGet, "/v1/admin/capsules/"+c.ID, admin, nil).JSON(t, &got)
	if got.Status != store.CapsuleStopped {
		t.Fatalf("capsule after admin snapshot: %s", got.Status)
	}
	if _, ok := f.agentStatus(t, c.ID); ok {
		t.Fatal("the snapshotted capsule is still on its host")
	}

	// Teams use it, cannot take its name and cannot delete it.
	var list []capsules.Template
	f.do(t, http.StatusOK, http.MethodGet, "/v1/snapshots?type=snapshot", key, nil).JSON(t, &list)
	if len(list) != 1 || list[0].Name != "plat1" || !list[0].Platform || list[0].TeamID != "" {
		t.Fatalf("team listing of platform snapshots: %+v", list)
	}
	clone := f.create(t, key, map[string]any{"template": "plat1"})
	if out := f.exec(t, clone.ID, "cat /tmp/p"); out != "platform" {
		t.Fatalf("capsule from the platform template: %q", out)
	}
	f.wantError(t, http.StatusConflict, "name_reserved", "", http.MethodPost, "/v1/snapshots", key, map[string]any{"capsule_id": clone.ID, "name": "plat1"})
	f.wantError(t, http.StatusForbidden, "forbidden", "platform templates cannot be deleted", http.MethodDelete, "/v1/snapshots/plat1", key, nil)

	// Admin listing has every team's templates with team_id.
	var all []capsules.Template
	f.do(t, http.StatusOK, http.MethodGet, "/v1/admin/templates", admin, nil).JSON(t, &all)
	if got := templateNames(all); !slices.Equal(got, []string{"base", "minimal", "plat1"}) {
		t.Fatalf("admin templates: %v", got)
	}
	for _, tp := range all {
		if tp.TeamID != platform {
			t.Errorf("admin template %s team_id %q", tp.Name, tp.TeamID)
		}
	}

	// A second admin snapshot of the same name replaces the template (and its files).
	f.do(t, http.StatusCreated, http.MethodPost, "/v1/admin/capsules", admin, map[string]any{"template": "minimal"}).JSON(t, &c)
	f.do(t, http.StatusCreated, http.MethodPost, "/v1/admin/capsules/"+c.ID+"/snapshot", admin, map[string]any{"name": "plat1"})
	if dirs := f.templateDirs(t, store.PlatformTeamID.String()); len(dirs) != 1 {
		t.Fatalf("platform template directories after replacement: %v", dirs)
	}

	f.wantError(t, http.StatusForbidden, "forbidden", "", http.MethodDelete, "/v1/admin/templates/base", admin, nil)
	f.wantError(t, http.StatusForbidden, "forbidden", "", http.MethodDelete, "/v1/admin/templates/minimal", admin, nil)
	f.wantError(t, http.StatusNotFound, "not_found", "template not found", http.MethodDelete, "/v1/admin/templates/nope", admin, nil)
	f.wantError(t, http.StatusForbidden, "forbidden", "", http.MethodDelete, "/v1/admin/templates/plat1", cptest.Bearer(f.alice.JWT), nil)
	f.do(t, http.StatusNoContent, http.MethodDelete, "/v1/admin/templates/plat1", admin, nil)
	if dirs := f.templateDirs(t, store.PlatformTeamID.String()); len(dirs) != 0 {
		t.Fatalf("platform template directories after delete: %v", dirs)
	}
	if out := f.exec(t, clone.ID, "cat /tmp/p"); out != "platform" {
		t.Fatalf("capsule after its template was deleted: %q", out)
	}
	f.do(t, http.StatusNoContent, http.MethodDelete, "/v1/capsules/"+clone.ID, key, nil)
}
