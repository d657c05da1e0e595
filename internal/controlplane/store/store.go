// Package store is the control plane's PostgreSQL persistence: the schema
// (goose migrations embedded in the binary, applied by Open), the queries
// (sqlc-generated package db) and transactions.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Store is a connection pool to a migrated database. Its embedded Queries run
// each statement on its own; use Tx to group statements.
type Store struct {
	*db.Queries
	pool *pgxpool.Pool
}

// Open connects to the database at dsn (a postgres:// URL or key=value
// string; pool settings such as pool_max_conns are honoured), applies the
// pending migrations and returns the store. Several control planes may open
// the same database at once: migrations run under a PostgreSQL advisory lock.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse database dsn: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{Queries: db.New(pool), pool: pool}, nil
}

// Close closes every connection of the pool.
func (s *Store) Close() { s.pool.Close() }

// Pool returns the underlying pool, for work the queries do not cover
// (COPY, LISTEN, health checks).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Tx runs fn in a transaction (read committed): committed when fn returns
// nil, rolled back when it returns an error or panics.
func (s *Store) Tx(ctx context.Context, fn func(q *db.Queries) error) error {
	return s.TxOptions(ctx, pgx.TxOptions{}, fn)
}

// TxOptions is Tx with explicit options (isolation level, read only).
func (s *Store) TxOptions(ctx context.Context, opts pgx.TxOptions, fn func(q *db.Queries) error) (err error) {
	tx, err := s.pool.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		// The transaction's own error (or panic) is what matters; a failed
		// rollback only means the connection is closed and discarded.
		if p := recover(); p != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			panic(p)
		}
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err := fn(db.New(tx)); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// ActivateUser activates an inactive user (never an admin: admins are made by
// the bootstrap or by another admin). Activations are serialized with the
// bootstrap by a transaction-scoped lock, so q must belong to a transaction
// (Tx). Not found (pgx.ErrNoRows) when the user is not inactive.
func ActivateUser(ctx context.Context, q *db.Queries, id uuid.UUID) (db.User, error) {
	if err := q.LockUserActivation(ctx); err != nil {
		return db.User{}, fmt.Errorf("lock activation: %w", err)
	}
	u, err := q.ActivateUserLocked(ctx, id)
	if err != nil {
		return db.User{}, fmt.Errorf("activate user: %w", err)
	}
	return u, nil
}

// HashToken returns the stored form of a secret (API key, host or account
// token): lower-case hex SHA-256. Lookups hash the presented secret the same way.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}
