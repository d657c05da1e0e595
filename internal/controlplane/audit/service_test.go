package audit_test

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/audit"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

func TestMain(m *testing.M) { testutil.Main(m) }

type page struct {
	Items []struct {
		ID           string          `json:"id"`
		TeamID       string          `json:"team_id"`
		ActorType    string          `json:"actor_type"`
		ActorID      string          `json:"actor_id"`
		ActorName    string          `json:"actor_name"`
		ResourceType string          `json:"resource_type"`
		ResourceID   string          `json:"resource_id"`
		Action       string          `json:"action"`
		Scope        string          `json:"scope"`
		Status       string          `json:"status"`
		Metadata     json.RawMessage `json:"metadata"`
		CreatedAt    string          `json:"created_at"`
	} `json:"items"`
	NextBefore   string `json:"next_before"`
	NextBeforeID string `json:"next_before_id"`
}

func (p page) actions() []string {
	var out []string
	for _, it := range p.Items {
		out = append(out, it.Action)
	}
	return out
}

func setup(t *testing.T) *cptest.Env {
	t.Helper()
	env := cptest.New(t)
	svc, err := audit.New(audit.Config{Store: env.Store})
	if err != nil {
		t.Fatal(err)
	}
	svc.Register(env.Router)
	return env
}

func user(a cptest.Account, name string) auth.Identity {
	return auth.Identity{Method: auth.MethodJWT, UserID: a.UserID, Name: name, TeamID: a.TeamID, Role: auth.RoleOwner}
}

func list(t *testing.T, env *cptest.Env, jwt, path string) page {
	t.Helper()
	res := env.Do(t, "GET", path, cptest.Bearer(jwt), nil)
	if res.Status != 200 {
		t.Fatalf("GET %s: %d %s", path, res.Status, res.Body)
	}
	var p page
	res.JSON(t, &p)
	return p
}

func TestListShapeScopeAndFilters(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	alice := env.NewAccount(t, "alice", false)
	bob := env.NewAccount(t, "bob", false)
	q := env.Store.Queries

	keyID := ids.APIKey.Format(uuid.New())
	audit.Record(ctx, q, audit.Entry{Team: alice.Team, Actor: user(alice, "Alice"), ResourceType: "capsule",
		ResourceID: "cl-1", Action: "capsule.create", Metadata: map[string]any{"template": "minimal"}})
	audit.Record(ctx, q, audit.Entry{Team: alice.Team, Actor: auth.Identity{Method: auth.MethodAPIKey, APIKeyID: keyID, APIKeyName: "ci"},
		ResourceType: "capsule", ResourceID: "cl-1", Action: "capsule.pause"})
	audit.Record(ctx, q, audit.Entry{Team: alice.Team, ResourceType: "capsule", ResourceID: "cl-1", Action: "capsule.destroy", Failed: true})
	audit.Record(ctx, q, audit.Entry{Team: alice.Team, Actor: user(alice, "Alice"), ResourceType: "api_key",
		ResourceID: keyID, Action: "api_key.create", Scope: audit.ScopeAdmin})
	audit.Record(ctx, q, audit.Entry{Team: alice.Team, Actor: user(alice, "Alice"), ResourceType: "template",
		ResourceID: "snap", Action: "template.snapshot"})
	audit.Record(ctx, q, audit.Entry{Team: bob.Team, Actor: user(bob, "Bob"), ResourceType: "capsule",
		ResourceID: "cl-2", Action: "capsule.create"})

	// The owner sees everything of the team, newest first, and nothing of bob's.
	p := list(t, env, alice.JWT, "/v1/audit-logs")
	if got, want := p.actions(), []string{"template.snapshot", "api_key.create", "capsule.destroy", "capsule.pause", "capsule.create"}; !slices.Equal(got, want) {
		t.Fatalf("actions = %v, want %v", got, want)
	}
	if p.NextBefore != "" || p.NextBeforeID != "" {
		t.Errorf("single page has a cursor: %+v", p)
	}
	create := p.Items[4]
	if !strings.HasPrefix(create.ID, "log-") || create.ActorType != "user" || create.ActorID != alice.UserID ||
		create.ActorName != "Alice" || create.ResourceType != "capsule" || create.ResourceID != "cl-1" ||
		create.Scope != "team" || create.Status != "success" || create.TeamID != "" {
		t.Errorf("capsule.create entry = %+v", create)
	}
	if string(create.Metadata) != `{"template": "minimal"}` && string(create.Metadata) != `{"template":"minimal"}` {
		t.Errorf("metadata = %s", create.Metadata)
	}
	if ts, err := time.Parse(time.RFC3339Nano, create.CreatedAt); err != nil || !strings.HasSuffix(create.CreatedAt, "Z") || time.Since(ts) > time.Minute {
		t.Errorf("created_at = %q (%v)", create.CreatedAt, err)
	}
	pause := p.Items[3]
	if pause.ActorType != "api_key" || pause.ActorID != keyID || pause.ActorName != "ci" || pause.Metadata != nil {
		t.Errorf("capsule.pause entry = %+v", pause)
	}
	destroy := p.Items[2]
	if destroy.ActorType != "system" || destroy.ActorID != "" || destroy.ActorName != "" || destroy.Status != "failure" {
		t.Errorf("capsule.destroy entry = %+v", destroy)
	}
	if p.Items[1].Scope != "admin" {
		t.Errorf("api_key.create scope = %q", p.Items[1].Scope)
	}

	// A member does not see admin-scope entries; an admin does.
	member := env.NewAccount(t, "member", false)
	env.AddMember(t, alice.Team, member.User, auth.RoleMember)
	memberJWT := env.JWT(t, member.User, alice.Team, auth.RoleMember)
	if got := list(t, env, memberJWT, "/v1/audit-logs").actions(); slices.Contains(got, "api_key.create") || len(got) != 4 {
		t.Errorf("member sees %v", got)
	}
	admin := env.NewAccount(t, "admin", false)
	env.AddMember(t, alice.Team, admin.User, auth.RoleAdmin)
	if got := list(t, env, env.JWT(t, admin.User, alice.Team, auth.RoleAdmin), "/v1/audit-logs").actions(); len(got) != 5 {
		t.Errorf("admin sees %v", got)
	}

	// Filters.
	if got := list(t, env, alice.JWT, "/v1/audit-logs?resource_type=template,api_key").actions(); !slices.Equal(got, []string{"template.snapshot", "api_key.create"}) {
		t.Errorf("resource_type=template,api_key: %v", got)
	}
	if got := list(t, env, alice.JWT, "/v1/audit-logs?resource_type=capsule&action=capsule.pause").actions(); !slices.Equal(got, []string{"capsule.pause"}) {
		t.Errorf("resource_type=capsule&action=capsule.pause: %v", got)
	}
	if got := list(t, env, alice.JWT, "/v1/audit-logs?action=host.down").Items; len(got) != 0 {
		t.Errorf("action=host.down: %v", got)
	}
	if got := list(t, env, memberJWT, "/v1/audit-logs?resource_type=api_key").Items; len(got) != 0 {
		t.Errorf("member filtering admin entries: %v", got)
	}
	// team_id is an admin-listing filter: ignored on the team listing.
	if got := list(t, env, alice.JWT, "/v1/audit-logs?team_id="+bob.TeamID).actions(); len(got) != 5 {
		t.Errorf("team listing with team_id: %v", got)
	}
}

func TestPaging(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	a := env.NewAccount(t, "pager", false)
	const n = 7
	// Entries sharing one created_at (one transaction) still page exactly, by id.
	err := env.Store.Tx(ctx, func(q *db.Queries) error {
		for i := range n {
			audit.Record(ctx, q, audit.Entry{Team: a.Team, Actor: user(a, "P"), ResourceType: "capsule",
				ResourceID: ids.Capsule.Format(uuid.New()), Action: "capsule.create", Metadata: map[string]any{"i": i}})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	audit.Record(ctx, env.Store.Queries, audit.Entry{Team: a.Team, Actor: user(a, "P"), ResourceType: "capsule", Action: "capsule.pause"})

	all := list(t, env, a.JWT, "/v1/audit-logs?limit=200")
	if len(all.Items) != n+1 || all.NextBefore != "" {
		t.Fatalf("full listing: %d items, next %q", len(all.Items), all.NextBefore)
	}
	var seen []string
	path := "/v1/audit-logs?limit=3"
	pages := 0
	for {
		p := list(t, env, a.JWT, path)
		pages++
		for _, it := range p.Items {
			seen = append(seen, it.ID)
		}
		if p.NextBefore == "" {
			if p.NextBeforeID != "" {
				t.Fatalf("next_before_id without next_before")
			}
			break
		}
		if len(p.Items) != 3 || !strings.HasPrefix(p.NextBeforeID, "log-") {
			t.Fatalf("page %d: %d items, cursor %q %q", pages, len(p.Items), p.NextBefore, p.NextBeforeID)
		}
		path = "/v1/audit-logs?limit=3&before=" + url.QueryEscape(p.NextBefore) + "&before_id=" + p.NextBeforeID
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if pages != 3 {
		t.Errorf("pages = %d, want 3", pages)
	}
	var want []string
	for _, it := range all.Items {
		want = append(want, it.ID)
	}
	if !slices.Equal(seen, want) {
		t.Errorf("paged ids = %v\nwant %v", seen, want)
	}
	// Exactly one full page: no cursor pointing at an empty page.
	if p := list(t, env, a.JWT, "/v1/audit-logs?limit=8"); len(p.Items) != 8 || p.NextBefore != "" {
		t.Errorf("limit=8: %d items, next %q", len(p.Items), p.NextBefore)
	}
	if p := list(t, env, a.JWT, "/v1/audit-logs?limit=1"); len(p.Items) != 1 || p.NextBefore == "" {
		t.Errorf("limit=1: %+v", p)
	}
	// The default limit is 50.
	err = env.Store.Tx(ctx, func(q *db.Queries) error {
		for range 50 {
			audit.Record(ctx, q, audit.Entry{Team: a.Team, ResourceType: "capsule", Action: "capsule.destroy"})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if p := list(t, env, a.JWT, "/v1/audit-logs"); len(p.Items) != audit.DefaultLimit || p.NextBefore == "" {
		t.Errorf("default page: %d items, next %q", len(p.Items), p.NextBefore)
	}
}

func TestBadParams(t *testing.T) {
	env := setup(t)
	a := env.NewAccount(t, "bad", true)
	for _, q := range []string{
		"limit=0", "limit=201", "limit=abc", "limit=-1",
		"before=yesterday", "before=2026-01-02",
		"before=2026-01-02T03:04:05Z&before_id=cl-0k4xq2m9d8e7r6t5y4u3i2o1p",
		"before_id=log-0000000000000000000000001",
		"resource_type=Capsule", "resource_type=capsule,bad-type",
		"action=capsule", "action=capsule.Create",
	} {
		for _, base := range []string{"/v1/audit-logs", "/v1/admin/audit-logs"} {
			res := env.Do(t, "GET", base+"?"+q, cptest.Bearer(a.JWT), nil)
			if res.Status != 400 || res.ErrorCode() != "invalid_request" {
				t.Errorf("%s?%s: %d %s", base, q, res.Status, res.Body)
			}
		}
	}
	res := env.Do(t, "GET", "/v1/admin/audit-logs?team_id=usr-0000000000000000000000001", cptest.Bearer(a.JWT), nil)
	if res.Status != 400 {
		t.Errorf("bad team_id: %d %s", res.Status, res.Body)
	}
	if res := env.Do(t, "GET", "/v1/audit-logs", cptest.Key(a.APIKey), nil); res.Status != 401 {
		t.Errorf("API key: %d %s", res.Status, res.Body)
	}
	noTeam := env.JWT(t, a.User, uuid.Nil, "")
	if res := env.Do(t, "GET", "/v1/audit-logs", cptest.Bearer(noTeam), nil); res.Status != 403 || res.ErrorCode() != "no_team" {
		t.Errorf("no team: %d %s", res.Status, res.Body)
	}
}

func TestAdminListing(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	root := env.NewAccount(t, "root", true)
	alice := env.NewAccount(t, "alice", false)
	bob := env.NewAccount(t, "bob", false)
	q := env.Store.Queries
	audit.Record(ctx, q, audit.Entry{Team: alice.Team, Actor: user(alice, "A"), ResourceType: "member", Action: "member.add", Scope: audit.ScopeAdmin})
	audit.Record(ctx, q, audit.Entry{Team: bob.Team, Actor: user(bob, "B"), ResourceType: "capsule", Action: "capsule.create"})
	audit.Record(ctx, q, audit.Entry{Team: store.PlatformTeamID, ResourceType: "host", ResourceID: "host-x", Action: "host.down", Scope: audit.ScopeAdmin})

	if res := env.Do(t, "GET", "/v1/admin/audit-logs", cptest.Bearer(alice.JWT), nil); res.Status != 403 || res.ErrorCode() != "forbidden" {
		t.Errorf("non-admin: %d %s", res.Status, res.Body)
	}
	p := list(t, env, root.JWT, "/v1/admin/audit-logs")
	if got := p.actions(); !slices.Equal(got, []string{"host.down", "capsule.create", "member.add"}) {
		t.Fatalf("admin listing: %v", got)
	}
	if p.Items[0].TeamID != ids.Team.Format(store.PlatformTeamID) || p.Items[1].TeamID != bob.TeamID || p.Items[2].TeamID != alice.TeamID {
		t.Errorf("team ids: %+v", p.Items)
	}
	if got := list(t, env, root.JWT, "/v1/admin/audit-logs?team_id="+alice.TeamID).actions(); !slices.Equal(got, []string{"member.add"}) {
		t.Errorf("team_id filter: %v", got)
	}
	if got := list(t, env, root.JWT, "/v1/admin/audit-logs?resource_type=host,capsule&limit=1"); len(got.Items) != 1 || got.Items[0].Action != "host.down" || got.NextBefore == "" {
		t.Errorf("admin filter + limit: %+v", got)
	}
	// The root's own team listing stays team-scoped.
	if got := list(t, env, root.JWT, "/v1/audit-logs").Items; len(got) != 0 {
		t.Errorf("root's team listing: %+v", got)
	}
}

// Record queues one notify job per subscribed channel, only for successful mapped actions.
func TestRecordQueuesEvents(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	a := env.NewAccount(t, "events", false)
	other := env.NewAccount(t, "other", false)
	q := env.Store.Queries
	mk := func(team uuid.UUID, events ...string) uuid.UUID {
		t.Helper()
		ch, err := q.InsertChannel(ctx, db.InsertChannelParams{ID: uuid.New(), TeamID: team, Name: "c", Provider: "webhook", Config: []byte{1}, Events: events})
		if err != nil {
			t.Fatal(err)
		}
		return ch.ID
	}
	c1 := mk(a.Team, audit.EventCapsuleCreated, audit.EventCapsuleDestroyed)
	c2 := mk(a.Team, audit.EventCapsuleCreated)
	mk(a.Team)
	mk(other.Team, audit.EventCapsuleCreated)

	actor := user(a, "Eve")
	audit.Record(ctx, q, audit.Entry{Team: a.Team, Actor: actor, ResourceType: "capsule", ResourceID: "cl-9", Action: "capsule.create"})
	audit.Record(ctx, q, audit.Entry{Team: a.Team, Actor: actor, ResourceType: "capsule", ResourceID: "cl-9", Action: "capsule.destroy", Failed: true})
	audit.Record(ctx, q, audit.Entry{Team: a.Team, Actor: actor, ResourceType: "capsule", ResourceID: "cl-9", Action: "capsule.pause"})
	audit.Record(ctx, q, audit.Entry{Team: a.Team, Actor: actor, ResourceType: "api_key", Action: "api_key.create", Scope: audit.ScopeAdmin})
	audit.Record(ctx, q, audit.Entry{Team: a.Team, ResourceType: "capsule", ResourceID: "cl-8", Action: "capsule.destroy"})

	got := map[uuid.UUID][]audit.Notification{}
	for {
		job, err := q.ClaimJob(ctx, db.ClaimJobParams{Worker: "t", LeaseSeconds: 60, Queue: audit.NotifyQueue})
		if err != nil {
			break
		}
		if job.MaxAttempts != audit.NotifyMaxAttempts {
			t.Errorf("max_attempts = %d", job.MaxAttempts)
		}
		var n audit.Notification
		if err := json.Unmarshal(job.Payload, &n); err != nil {
			t.Fatal(err)
		}
		got[n.ChannelID] = append(got[n.ChannelID], n)
	}
	if len(got) != 2 || len(got[c1]) != 2 || len(got[c2]) != 1 {
		t.Fatalf("jobs per channel: %v", got)
	}
	n := got[c2][0]
	if n.Event.Event != audit.EventCapsuleCreated || n.TeamID != a.TeamID || n.Resource != (audit.EventResource{ID: "cl-9", Type: "capsule"}) ||
		n.Actor != (audit.EventActor{Type: "user", ID: a.UserID, Name: "Eve"}) || n.DeliveryID == uuid.Nil {
		t.Errorf("notification = %+v", n)
	}
	if ts, err := time.Parse(time.RFC3339, n.Timestamp); err != nil || !strings.HasSuffix(n.Timestamp, "Z") || time.Since(ts) > time.Minute {
		t.Errorf("timestamp %q: %v", n.Timestamp, err)
	}
	sys := got[c1][1]
	if sys.Event.Event != audit.EventCapsuleDestroyed || sys.Actor != (audit.EventActor{Type: "system"}) || sys.Resource.ID != "cl-8" {
		t.Errorf("system notification = %+v", sys)
	}
	if got[c1][0].DeliveryID == got[c2][0].DeliveryID {
		t.Error("two deliveries share an id")
	}
	// Each entry is still recorded once.
	if p := list(t, env, a.JWT, "/v1/audit-logs"); len(p.Items) != 5 {
		t.Errorf("%d entries", len(p.Items))
	}
}
