package store

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wrenn/wrenn/internal/testutil"
)

func tableNames(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(t.Context(),
		`SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// TestMigrationsUpDownUp applies every migration on an empty database, rolls
// all of them back (leaving only goose's bookkeeping), and applies them again.
func TestMigrationsUpDownUp(t *testing.T) {
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, testutil.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	p, err := newMigrator(pool)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	sources := p.ListSources()
	if len(sources) == 0 {
		t.Fatal("no embedded migrations")
	}
	latest := sources[len(sources)-1].Version

	up := func() {
		t.Helper()
		res, err := p.Up(ctx)
		if err != nil {
			t.Fatalf("up: %v", err)
		}
		if len(res) != len(sources) {
			t.Fatalf("up applied %d migrations, want %d", len(res), len(sources))
		}
		if v, err := p.GetDBVersion(ctx); err != nil || v != latest {
			t.Fatalf("version after up = %d, %v; want %d", v, err, latest)
		}
		for _, want := range []string{"users", "teams", "team_members", "api_keys", "capsules", "templates", "hosts",
			"host_registration_tokens", "host_refresh_tokens", "internal_ca", "audit_logs", "capsule_metrics",
			"team_stats_samples", "one_time_tokens", "jobs", "builds", "build_archives", "channels", "user_identities"} {
			if !slices.Contains(tableNames(t, pool), want) {
				t.Errorf("table %s missing after up", want)
			}
		}
	}
	up()
	if pending, err := p.HasPending(ctx); err != nil || pending {
		t.Fatalf("pending after up = %v, %v", pending, err)
	}

	if _, err := p.DownTo(ctx, 0); err != nil {
		t.Fatalf("down: %v", err)
	}
	if got := tableNames(t, pool); !slices.Equal(got, []string{"goose_db_version"}) {
		t.Fatalf("tables after down = %v, want only goose_db_version", got)
	}
	var funcs int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = 'public'`).Scan(&funcs); err != nil || funcs != 0 {
		t.Fatalf("functions after down = %d, %v", funcs, err)
	}
	up()
}

// TestConcurrentOpen starts several control planes on one empty database at
// once: the migration lock lets every one succeed and migrate once.
func TestConcurrentOpen(t *testing.T) {
	dsn := testutil.Postgres(t)
	const n = 4
	errs := make(chan error, n)
	stores := make(chan *Store, n)
	for range n {
		go func() {
			s, err := Open(context.Background(), dsn)
			errs <- err
			stores <- s
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("open: %v", err)
		}
		if s := <-stores; s != nil {
			defer s.Close()
		}
	}
	pool, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var applied int
	if err := pool.QueryRow(t.Context(),
		`SELECT count(*) FROM goose_db_version WHERE version_id > 0 AND is_applied`).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	p, err := newMigrator(pool)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if applied != len(p.ListSources()) {
		t.Errorf("goose_db_version has %d applied rows, want %d", applied, len(p.ListSources()))
	}
}
