package store_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

func TestAuditLogs(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	u := mustUser(t, s, store.UserActive)
	team := mustTeam(t, s, u.ID)
	other := mustTeam(t, s, mustUser(t, s, store.UserActive).ID)

	insert := func(teamID uuid.UUID, resource, action, scope string) db.AuditLog {
		t.Helper()
		e, err := s.InsertAuditLog(ctx, db.InsertAuditLogParams{
			TeamID: teamID, ActorType: store.ActorUser, ActorID: &u.ID, ActorName: ptr(u.Name),
			ResourceType: resource, ResourceID: ptr("cl-0000000000000000000000001"), Action: action, Scope: scope,
			Status: store.AuditSuccess, Metadata: json.RawMessage(`{"template":"base"}`),
		})
		must(t, err)
		return e
	}
	var created []db.AuditLog
	for range 5 {
		created = append(created, insert(team.ID, "capsule", "capsule.create", store.ScopeTeam))
	}
	created = append(created, insert(team.ID, "api_key", "api_key.create", store.ScopeAdmin))
	insert(other.ID, "capsule", "capsule.destroy", store.ScopeTeam)
	sys, err := s.InsertAuditLog(ctx, db.InsertAuditLogParams{
		TeamID: team.ID, ActorType: store.ActorSystem, ResourceType: "capsule", Action: "capsule.pause",
		Scope: store.ScopeTeam, Status: store.AuditSuccess,
	})
	must(t, err)
	if string(sys.Metadata) != "{}" {
		t.Fatalf("nil metadata stored as %s", sys.Metadata)
	}
	created = append(created, sys)

	list := func(p db.ListAuditLogsParams) []db.AuditLog {
		t.Helper()
		if p.MaxResults == 0 {
			p.MaxResults = 50
		}
		out, err := s.ListAuditLogs(ctx, p)
		must(t, err)
		return out
	}
	member := list(db.ListAuditLogsParams{TeamID: &team.ID})
	if len(member) != 6 {
		t.Fatalf("member view has %d entries, want 6 (no admin scope)", len(member))
	}
	full := list(db.ListAuditLogsParams{TeamID: &team.ID, IncludeAdmin: true})
	if len(full) != 7 {
		t.Fatalf("owner view has %d entries, want 7", len(full))
	}
	for i := 1; i < len(full); i++ {
		a, b := full[i-1], full[i]
		if a.CreatedAt.Before(b.CreatedAt) || (a.CreatedAt.Equal(b.CreatedAt) && slices.Compare(a.ID[:], b.ID[:]) < 0) {
			t.Fatalf("not newest first at %d", i)
		}
	}
	// Keyset paging visits every entry once.
	var paged []uuid.UUID
	p := db.ListAuditLogsParams{TeamID: &team.ID, IncludeAdmin: true, MaxResults: 3}
	for {
		page := list(p)
		for _, e := range page {
			paged = append(paged, e.ID)
		}
		if len(page) < 3 {
			break
		}
		last := page[len(page)-1]
		p.Before, p.BeforeID = &last.CreatedAt, &last.ID
	}
	if len(paged) != 7 {
		t.Fatalf("paging returned %d entries, want 7", len(paged))
	}
	for _, e := range created {
		if !slices.Contains(paged, e.ID) {
			t.Fatalf("paging missed %s", e.ID)
		}
	}

	if got := list(db.ListAuditLogsParams{TeamID: &team.ID, IncludeAdmin: true, ResourceTypes: []string{"api_key", "host"}}); len(got) != 1 {
		t.Fatalf("resource filter = %d entries", len(got))
	}
	if got := list(db.ListAuditLogsParams{TeamID: &team.ID, Action: ptr("capsule.pause")}); len(got) != 1 || got[0].ActorType != store.ActorSystem {
		t.Fatalf("action filter = %+v", got)
	}
	if got := list(db.ListAuditLogsParams{IncludeAdmin: true}); len(got) != 8 {
		t.Fatalf("admin listing across teams = %d entries, want 8", len(got))
	}

	for _, bad := range []db.InsertAuditLogParams{
		{TeamID: team.ID, ActorType: store.ActorSystem, ActorID: &u.ID, ResourceType: "capsule", Action: "capsule.pause", Scope: store.ScopeTeam, Status: store.AuditSuccess},
		{TeamID: team.ID, ActorType: store.ActorUser, ResourceType: "capsule", Action: "capsule.pause", Scope: store.ScopeTeam, Status: store.AuditSuccess},
		{TeamID: team.ID, ActorType: store.ActorSystem, ResourceType: "capsule", Action: "pause", Scope: store.ScopeTeam, Status: store.AuditSuccess},
		{TeamID: team.ID, ActorType: store.ActorSystem, ResourceType: "capsule", Action: "capsule.pause", Scope: "public", Status: store.AuditSuccess},
		{TeamID: team.ID, ActorType: store.ActorSystem, ResourceType: "capsule", Action: "capsule.pause", Scope: store.ScopeTeam, Status: "ok"},
		{TeamID: team.ID, ActorType: store.ActorSystem, ResourceType: "capsule", Action: "capsule.pause", Scope: store.ScopeTeam, Status: store.AuditSuccess, Metadata: json.RawMessage(`[1]`)},
	} {
		if _, err := s.InsertAuditLog(ctx, bad); !store.IsCheckViolation(err, "") {
			t.Errorf("InsertAuditLog(%+v) error = %v, want check violation", bad, err)
		}
	}
}

func TestJobs(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	job, err := s.EnqueueJob(ctx, db.EnqueueJobParams{Queue: "notifications", Payload: json.RawMessage(`{"event":"host.up"}`), MaxAttempts: 2})
	must(t, err)
	if job.Status != store.JobPending || job.Attempts != 0 {
		t.Fatalf("enqueued = %+v", job)
	}
	_, err = s.EnqueueJob(ctx, db.EnqueueJobParams{Queue: "notifications", RunAt: ptr(time.Now().Add(time.Hour)), MaxAttempts: 1})
	must(t, err)

	claim := func(worker string) (db.Job, error) {
		return s.ClaimJob(ctx, db.ClaimJobParams{Queue: "notifications", Worker: worker, LeaseSeconds: 60})
	}
	got, err := claim("w1")
	must(t, err)
	if got.ID != job.ID || got.Status != store.JobRunning || got.Attempts != 1 || *got.LockedBy != "w1" {
		t.Fatalf("claimed = %+v", got)
	}
	_, err = claim("w2") // the other job is not due yet
	wantNoRows(t, err)

	n, err := s.CompleteJob(ctx, db.CompleteJobParams{ID: job.ID, Worker: "w2"})
	mustRows(t, n, err, 0)
	failed, err := s.FailJob(ctx, db.FailJobParams{ID: job.ID, Worker: "w1", LastError: "503 from webhook", RetryAt: time.Now().Add(-time.Second)})
	must(t, err)
	if failed.Status != store.JobPending || failed.LockedBy != nil || *failed.LastError != "503 from webhook" {
		t.Fatalf("after first failure = %+v", failed)
	}
	got, err = claim("w1")
	must(t, err)
	failed, err = s.FailJob(ctx, db.FailJobParams{ID: got.ID, Worker: "w1", LastError: "again", RetryAt: time.Now()})
	must(t, err)
	if failed.Status != store.JobFailed || failed.FinishedAt == nil || failed.Attempts != 2 {
		t.Fatalf("after last attempt = %+v", failed)
	}

	// A worker that dies loses its lease; the job goes back to the queue.
	ok, err := s.EnqueueJob(ctx, db.EnqueueJobParams{Queue: "notifications", MaxAttempts: 3})
	must(t, err)
	_, err = s.ClaimJob(ctx, db.ClaimJobParams{Queue: "notifications", Worker: "dead", LeaseSeconds: 0})
	must(t, err)
	n, err = s.ReapExpiredJobs(ctx)
	mustRows(t, n, err, 1)
	got, err = claim("w3")
	must(t, err)
	if got.ID != ok.ID || got.Attempts != 2 {
		t.Fatalf("reclaimed = %+v", got)
	}
	n, err = s.CompleteJob(ctx, db.CompleteJobParams{ID: ok.ID, Worker: "w3"})
	mustRows(t, n, err, 1)
	done, err := s.GetJob(ctx, ok.ID)
	must(t, err)
	if done.Status != store.JobDone || done.FinishedAt == nil || done.LockedUntil != nil {
		t.Fatalf("done = %+v", done)
	}
	n, err = s.DeleteFinishedJobs(ctx, time.Now().Add(time.Second))
	mustRows(t, n, err, 2)

	_, err = s.EnqueueJob(ctx, db.EnqueueJobParams{Queue: "Bad Queue", MaxAttempts: 1})
	if !store.IsCheckViolation(err, "") {
		t.Fatalf("bad queue name: %v", err)
	}
}

// TestJobClaimsAreExclusive lets several workers drain a queue concurrently:
// every job is claimed exactly once.
func TestJobClaimsAreExclusive(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	const jobs, workers = 40, 4
	for range jobs {
		_, err := s.EnqueueJob(ctx, db.EnqueueJobParams{Queue: "work", MaxAttempts: 1})
		must(t, err)
	}
	var mu sync.Mutex
	seen := map[int64]string{}
	var wg sync.WaitGroup
	for w := range workers {
		name := "w" + string(rune('a'+w))
		wg.Go(func() {
			for {
				j, err := s.ClaimJob(context.Background(), db.ClaimJobParams{Queue: "work", Worker: name, LeaseSeconds: 60})
				if store.IsNotFound(err) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if prev, dup := seen[j.ID]; dup {
					t.Errorf("job %d claimed by %s and %s", j.ID, prev, name)
				}
				seen[j.ID] = name
				mu.Unlock()
				if n, err := s.CompleteJob(context.Background(), db.CompleteJobParams{ID: j.ID, Worker: name}); err != nil || n != 1 {
					t.Errorf("complete %d: %d, %v", j.ID, n, err)
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != jobs {
		t.Fatalf("%d jobs claimed, want %d", len(seen), jobs)
	}
}

func TestBuilds(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	admin := mustUser(t, s, store.UserActive)
	b, err := s.CreateBuild(ctx, db.CreateBuildParams{
		Name: "python", BaseTemplate: "base", Recipe: []string{"RUN apt install -y python3"}, VCPUs: 1, MemoryMB: 512,
		TotalSteps: 8, CreatedBy: &admin.ID,
	})
	must(t, err)
	if b.Status != store.BuildPending || b.CurrentStep != 0 || string(b.Logs) != "[]" || b.DefaultEnv == nil {
		t.Fatalf("build = %+v", b)
	}
	_, err = s.CreateBuild(ctx, db.CreateBuildParams{Name: "python", BaseTemplate: "base", Recipe: []string{"RUN true"}, VCPUs: 1, MemoryMB: 512, TotalSteps: 8})
	if !store.IsUniqueViolation(err, "builds_active_name_key") {
		t.Fatalf("second active build of a name: %v", err)
	}
	_, err = s.CreateBuild(ctx, db.CreateBuildParams{Name: "empty", BaseTemplate: "base", Recipe: []string{}, VCPUs: 1, MemoryMB: 512, TotalSteps: 7})
	if !store.IsCheckViolation(err, "") {
		t.Fatalf("empty recipe: %v", err)
	}
	_, err = s.Pool().Exec(ctx, `UPDATE builds SET status = 'success' WHERE id = $1`, b.ID)
	if !store.IsCheckViolation(err, "") {
		t.Fatalf("terminal status without completed_at: %v", err)
	}
	_, err = s.Pool().Exec(ctx, `UPDATE builds SET status = 'cancelled', completed_at = now() WHERE id = $1`, b.ID)
	must(t, err)
	again, err := s.CreateBuild(ctx, db.CreateBuildParams{Name: "python", BaseTemplate: "base", Recipe: []string{"RUN true"}, VCPUs: 1, MemoryMB: 512, TotalSteps: 8})
	must(t, err)

	must(t, s.PutBuildArchiveChunk(ctx, db.PutBuildArchiveChunkParams{BuildID: again.ID, Seq: 0, Data: []byte("PK\x03\x04")}))
	must(t, s.PutBuildArchiveChunk(ctx, db.PutBuildArchiveChunkParams{BuildID: again.ID, Seq: 1, Data: []byte("...")}))
	data, err := s.GetBuildArchiveChunk(ctx, db.GetBuildArchiveChunkParams{BuildID: again.ID, Seq: 1})
	must(t, err)
	if string(data) != "..." {
		t.Fatalf("archive chunk = %q", data)
	}

	// The queue: claim with a lease, renew, expiry fails it; a cancelled build stays cancelled.
	claimed, err := s.ClaimBuild(ctx, 30)
	must(t, err)
	if claimed.ID != again.ID || claimed.Status != store.BuildRunning || claimed.LeaseUntil == nil || claimed.StartedAt == nil {
		t.Fatalf("claimed = %+v", claimed)
	}
	if _, err := s.ClaimBuild(ctx, 30); !store.IsNotFound(err) {
		t.Fatalf("second claim: %v", err)
	}
	n, err := s.RenewBuildLease(ctx, db.RenewBuildLeaseParams{ID: again.ID, LeaseSec: -1})
	mustRows(t, n, err, 1)
	lost := "lost"
	expired, err := s.FailExpiredBuilds(ctx, &lost)
	must(t, err)
	if len(expired) != 1 || expired[0].ID != again.ID || expired[0].Status != store.BuildFailed {
		t.Fatalf("expired = %+v", expired)
	}
	if _, err := s.CancelBuild(ctx, again.ID); !store.IsNotFound(err) {
		t.Fatalf("cancel of a failed build: %v", err)
	}
	finished, err := s.ListFinishedBuildsWithArchive(ctx)
	must(t, err)
	if len(finished) != 1 || finished[0] != again.ID {
		t.Fatalf("finished with archive = %v", finished)
	}
	n, err = s.DeleteBuildArchive(ctx, again.ID)
	mustRows(t, n, err, 2)

	got, err := s.GetBuild(ctx, b.ID)
	must(t, err)
	if got.Status != store.BuildCancelled {
		t.Fatalf("build = %+v", got)
	}
	list, err := s.ListBuilds(ctx)
	must(t, err)
	if len(list) != 2 || list[0].ID != again.ID {
		t.Fatalf("builds = %+v", list)
	}
}

func TestChannels(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	team := mustTeam(t, s, mustUser(t, s, store.UserActive).ID)
	other := mustTeam(t, s, mustUser(t, s, store.UserActive).ID)
	ch, err := s.CreateChannel(ctx, db.CreateChannelParams{TeamID: team.ID, Name: "ops", Provider: "webhook", Config: []byte("sealed"), Events: []string{"capsule.paused", "host.down"}})
	must(t, err)
	quiet, err := s.CreateChannel(ctx, db.CreateChannelParams{TeamID: team.ID, Name: "quiet", Provider: "slack", Config: []byte("sealed")})
	must(t, err)
	if quiet.Events == nil || len(quiet.Events) != 0 {
		t.Fatalf("quiet channel = %+v", quiet)
	}
	_, err = s.CreateChannel(ctx, db.CreateChannelParams{TeamID: team.ID, Name: "x", Provider: "irc", Config: []byte("c")})
	if !store.IsCheckViolation(err, "") {
		t.Fatalf("bad provider: %v", err)
	}
	_, err = s.CreateChannel(ctx, db.CreateChannelParams{TeamID: team.ID, Name: "x", Provider: "slack", Config: []byte("c"), Events: []string{"capsule.exploded"}})
	if !store.IsCheckViolation(err, "") {
		t.Fatalf("bad event: %v", err)
	}
	subs, err := s.ListChannelsForEvent(ctx, db.ListChannelsForEventParams{TeamID: team.ID, Event: "host.down"})
	must(t, err)
	if len(subs) != 1 || subs[0].ID != ch.ID {
		t.Fatalf("subscribers = %+v", subs)
	}
	all, err := s.ListChannels(ctx, team.ID)
	must(t, err)
	if len(all) != 2 {
		t.Fatalf("channels = %d", len(all))
	}
	_, err = s.GetChannel(ctx, db.GetChannelParams{TeamID: other.ID, ID: ch.ID})
	wantNoRows(t, err)
	got, err := s.GetChannel(ctx, db.GetChannelParams{TeamID: team.ID, ID: ch.ID})
	must(t, err)
	if string(got.Config) != "sealed" {
		t.Fatalf("channel = %+v", got)
	}
	n, err := s.DeleteChannel(ctx, db.DeleteChannelParams{TeamID: team.ID, ID: ch.ID})
	mustRows(t, n, err, 1)
}

// TestConstraintsRejectBadData feeds rows that would corrupt the data model
// straight to the database; each must be refused with the right kind of error.
func TestConstraintsRejectBadData(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	team := mustTeam(t, s, mustUser(t, s, store.UserActive).ID)
	mustCapsule(t, s, team.ID, nil)
	base := db.CreateCapsuleParams{TeamID: team.ID, TemplateName: "base", VCPUs: 1, MemoryMB: 512, DiskMB: 5120, DefaultUser: "root"}
	capsule := func(f func(*db.CreateCapsuleParams)) error {
		p := base
		f(&p)
		_, err := s.CreateCapsule(ctx, p)
		return err
	}
	template := func(p db.CreateTemplateParams) error {
		if p.TeamID == uuid.Nil {
			p.TeamID = team.ID
		}
		if p.DefaultUser == "" {
			p.DefaultUser = "root"
		}
		_, err := s.CreateTemplate(ctx, p)
		return err
	}
	exec := func(sql string, args ...any) error {
		_, err := s.Pool().Exec(ctx, sql, args...)
		return err
	}
	fk := func(err error) bool { return store.IsForeignKeyViolation(err, "") }
	check := func(err error) bool { return store.IsCheckViolation(err, "") }
	tests := []struct {
		name string
		err  error
		kind func(error) bool
	}{
		{"capsule of a missing team", capsule(func(p *db.CreateCapsuleParams) { p.TeamID = uuid.New() }), fk},
		{"capsule on a missing host", capsule(func(p *db.CreateCapsuleParams) { p.HostID = ptr(uuid.New()) }), fk},
		{"capsule of a missing template", capsule(func(p *db.CreateCapsuleParams) { p.TemplateID = ptr(uuid.New()) }), fk},
		{"capsule with 0 vcpus", capsule(func(p *db.CreateCapsuleParams) { p.VCPUs = 0 }), check},
		{"capsule with 64 MiB", capsule(func(p *db.CreateCapsuleParams) { p.MemoryMB = 64 }), check},
		{"capsule with negative timeout", capsule(func(p *db.CreateCapsuleParams) { p.TimeoutSec = -1 }), check},
		{"capsule with empty default user", capsule(func(p *db.CreateCapsuleParams) { p.DefaultUser = "" }), check},
		{"capsule env with a number", exec(`UPDATE capsules SET default_env = '{"A": 1}'`), check},
		{"template with a bad name", template(db.CreateTemplateParams{Name: "-bad", Type: store.TemplateBase}), check},
		{"template with a long name", template(db.CreateTemplateParams{Name: "a" + strings.Repeat("a", 64), Type: store.TemplateBase}), check},
		{"template of unknown type", template(db.CreateTemplateParams{Name: "x", Type: "image"}), check},
		{"snapshot template without size", template(db.CreateTemplateParams{Name: "x", Type: store.TemplateSnapshot}), check},
		{"template env with a number", exec(`INSERT INTO templates (team_id, name, type, default_env) VALUES ($1, 'n', 'base', '{"A": 1}')`, team.ID), check},
		{"template env as an array", exec(`INSERT INTO templates (team_id, name, type, default_env) VALUES ($1, 'n', 'base', '[]')`, team.ID), check},
		{"user with a bad email", exec(`INSERT INTO users (email, name) VALUES ('nobody', 'n')`), check},
		{"user with an upper-case email", exec(`INSERT INTO users (email, name) VALUES ('A@b.c', 'n')`), check},
		{"deleted user without deleted_at", exec(`INSERT INTO users (email, name, status) VALUES ('d@b.c', 'n', 'deleted')`), check},
		{"team with a bad slug", exec(`INSERT INTO teams (name, slug) VALUES ('t', 'slug')`), check},
		{"team with an empty name", exec(`INSERT INTO teams (name) VALUES ('')`), check},
		{"platform team deleted", exec(`UPDATE teams SET deleted_at = now() WHERE id = $1`, store.PlatformTeamID), check},
		{"regular host of a team", exec(`INSERT INTO hosts (type, team_id) VALUES ('regular', $1)`, team.ID), check},
		{"byoc host without team", exec(`INSERT INTO hosts (type) VALUES ('byoc')`), check},
		{"online host without address", exec(`INSERT INTO hosts (type, status) VALUES ('regular', 'online')`), check},
		{"api key with a bad prefix", exec(`INSERT INTO api_keys (team_id, name, key_hash, key_prefix) VALUES ($1, 'k', $2, 'sk_123')`, team.ID, store.HashToken("k")), check},
		{"api key of a missing team", exec(`INSERT INTO api_keys (team_id, name, key_hash, key_prefix) VALUES ($1, 'k', $2, 'wrn_abcdef')`, uuid.New(), store.HashToken("k")), fk},
		{"two CA rows", exec(`INSERT INTO internal_ca (id, cert_pem, key_pem) VALUES (false, '-----BEGIN CERTIFICATE-----', 'k')`), check},
		{"negative metric", exec(`INSERT INTO capsule_metrics (capsule_id, tier, ts, cpu_pct, mem_bytes, disk_bytes) SELECT id, '10m', now(), -1, 0, 0 FROM capsules LIMIT 1`), check},
		{"running job without lock", exec(`INSERT INTO jobs (queue, status) VALUES ('q', 'running')`), check},
		{"done job without finished_at", exec(`INSERT INTO jobs (queue, status) VALUES ('q', 'done')`), check},
		{"build step past total", exec(`INSERT INTO builds (name, recipe, total_steps, current_step) VALUES ('b', '{RUN true}', 1, 2)`), check},
		{"archive of a missing build", exec(`INSERT INTO build_archives (build_id, seq, data) VALUES ($1, 0, 'x')`, uuid.New()), fk},
	}
	for _, tc := range tests {
		if !tc.kind(tc.err) {
			t.Errorf("%s: error = %v", tc.name, tc.err)
		}
	}
}
