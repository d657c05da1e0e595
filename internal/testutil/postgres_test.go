package testutil

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func TestWithDatabase(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable", "postgres://u:p@127.0.0.1:5432/db1?sslmode=disable"},
		{"postgresql://u@h/other", "postgresql://u@h/db1"},
		{"host=h port=5 user=u dbname=postgres", "host=h port=5 user=u dbname=postgres dbname=db1"},
	} {
		got, err := withDatabase(tc.in, "db1")
		if err != nil || got != tc.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		cfg, err := pgx.ParseConfig(got)
		if err != nil || cfg.Database != "db1" {
			t.Errorf("%q parses to database %q, %v", got, cfg.Database, err)
		}
	}
}

// TestPostgres checks that each call gets its own empty database, and that
// the database is dropped when its test ends.
func TestPostgres(t *testing.T) {
	ctx := context.Background()
	var first string
	t.Run("create", func(t *testing.T) {
		first = Postgres(t)
		second := Postgres(t)
		names := map[string]bool{}
		for _, dsn := range []string{first, second} {
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			var db string
			var tables int
			err = conn.QueryRow(ctx, `SELECT current_database(), (SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public')`).Scan(&db, &tables)
			_ = conn.Close(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tables != 0 {
				t.Errorf("%s has %d tables, want an empty database", db, tables)
			}
			names[db] = true
		}
		if len(names) != 2 {
			t.Fatalf("two calls returned the same database: %v", names)
		}
	})
	if first == "" {
		return // skipped: no PostgreSQL
	}
	if conn, err := pgx.Connect(ctx, first); err == nil {
		_ = conn.Close(ctx)
		t.Fatal("database still exists after its test ended")
	}
}
