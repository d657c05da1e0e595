package store

import (
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATE codes of the integrity violations callers map to API errors.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
	codeCheckViolation      = "23514"
	codeNotNullViolation    = "23502"
	codeLockNotAvailable    = "55P03"
)

// IsNotFound reports whether err says a query matched no row.
func IsNotFound(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

// IsUniqueViolation reports whether err is a duplicate key; with a non-empty
// constraint, only of that constraint or unique index (e.g. "users_email_key").
func IsUniqueViolation(err error, constraint string) bool {
	return isViolation(err, codeUniqueViolation, constraint)
}

// IsForeignKeyViolation reports whether err is a reference to a missing row
// (or a delete of a referenced one); constraint as for IsUniqueViolation.
func IsForeignKeyViolation(err error, constraint string) bool {
	return isViolation(err, codeForeignKeyViolation, constraint)
}

// IsCheckViolation reports whether err is a CHECK constraint failure
// (a value outside an enum, a negative size, …); constraint as for IsUniqueViolation.
func IsCheckViolation(err error, constraint string) bool {
	return isViolation(err, codeCheckViolation, constraint)
}

// IsNotNullViolation reports whether err is a NULL in a NOT NULL column.
func IsNotNullViolation(err error) bool {
	return isViolation(err, codeNotNullViolation, "")
}

// IsLockNotAvailable reports whether err is a NOWAIT lock request refused because another
// transaction holds the lock.
func IsLockNotAvailable(err error) bool {
	return isViolation(err, codeLockNotAvailable, "")
}

func isViolation(err error, code, constraint string) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != code {
		return false
	}
	return constraint == "" || pgErr.ConstraintName == constraint
}
