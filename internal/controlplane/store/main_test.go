package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// openStore opens a store on a fresh database, closed when the test ends.
func openStore(t *testing.T) *store.Store {
	t.Helper()
	return openDSN(t, testutil.Postgres(t))
}

func openDSN(t *testing.T, dsn string) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}
