package accounts

import (
	"context"
	"errors"
	"fmt"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// BootstrapResult is what Bootstrap created.
type BootstrapResult struct {
	UserID string // usr-…
	TeamID string // team-…
	APIKey string // wrn_… secret of the team's key, shown once
}

// bootstrapKeyName names the API key Bootstrap creates.
const bootstrapKeyName = "Bootstrap key"

// ErrEmailTaken is returned (wrapped) by Bootstrap when an account with the email exists.
var ErrEmailTaken = errors.New("an account with this email already exists")

// Bootstrap creates the first platform admin without mail (self-hosting): an active admin user with
// password, its team "<name>'s Team" (owner) and an API key of that team. An existing account with the
// same email is an error wrapping ErrEmailTaken; nothing is changed then.
func Bootstrap(ctx context.Context, st *store.Store, email, password, name string) (BootstrapResult, error) {
	email = normalizeEmail(email)
	if err := checkEmail(email); err != nil {
		return BootstrapResult{}, plain(err)
	}
	name, err := checkName(name)
	if err != nil {
		return BootstrapResult{}, plain(err)
	}
	if password == "" {
		return BootstrapResult{}, errors.New("password is required")
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return BootstrapResult{}, plain(err)
	}
	key := auth.GenerateAPIKey()
	var res BootstrapResult
	err = st.Tx(ctx, func(q *db.Queries) error {
		// Serialized with activations and other bootstraps.
		if err := q.LockUserActivation(ctx); err != nil {
			return fmt.Errorf("lock activation: %w", err)
		}
		if _, err := q.GetUserByEmail(ctx, email); err == nil {
			return fmt.Errorf("%w: %s", ErrEmailTaken, email)
		} else if !store.IsNotFound(err) {
			return fmt.Errorf("read user: %w", err)
		}
		u, err := q.CreateUser(ctx, db.CreateUserParams{Email: email, Name: name, PasswordHash: &hash, Status: store.UserActive, IsAdmin: true})
		if store.IsUniqueViolation(err, "") {
			return fmt.Errorf("%w: %s", ErrEmailTaken, email)
		}
		if err != nil {
			return fmt.Errorf("create user: %w", err)
		}
		t, err := createTeam(ctx, q, u.ID, name+"'s Team")
		if err != nil {
			return plain(err)
		}
		if _, err := q.CreateAPIKey(ctx, db.CreateAPIKeyParams{
			TeamID: t.ID, Name: bootstrapKeyName, KeyHash: key.Hash, KeyPrefix: key.Prefix, CreatedBy: &u.ID,
		}); err != nil {
			return fmt.Errorf("create API key: %w", err)
		}
		res = BootstrapResult{UserID: ids.User.Format(u.ID), TeamID: ids.Team.Format(t.ID), APIKey: key.Secret}
		return nil
	})
	if err != nil {
		return BootstrapResult{}, fmt.Errorf("bootstrap admin: %w", err)
	}
	return res, nil
}

// plain turns an API error into an error for a command line: its message, or its cause for a 500.
func plain(err error) error {
	var e *apierr.Error
	if !errors.As(err, &e) {
		return err
	}
	if e.Status >= 500 && e.Err != nil {
		return e.Err
	}
	return errors.New(e.Message)
}
