package accounts

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/mail"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// signupMessage is the 201 answer of POST /v1/auth/signup.
const signupMessage = "Account created. Please check your email to activate your account."

const msgInvalidCredentials = "invalid email or password"

// POST /v1/auth/signup {email, password, name} → 201.
func (s *Service) handleSignup(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Email    string `json:"email"`
		Password string `json:"password"`
		Name     string `json:"name"`
	}
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	if err := take(limitKey{s.limits.signupIP, clientIP(r)}); err != nil {
		apierr.Write(w, r, err)
		return
	}
	if err := s.Signup(r.Context(), req.Email, req.Password, req.Name); err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, map[string]string{"message": signupMessage})
}

// Signup creates an inactive account and mails its activation link. An inactive signup of the same
// email younger than SignupCooldown answers 409 signup_cooldown; an older one is replaced.
func (s *Service) Signup(ctx context.Context, rawEmail, password, rawName string) error {
	email := normalizeEmail(rawEmail)
	if err := checkEmail(email); err != nil {
		return err
	}
	if password == "" {
		return apierr.InvalidRequest("password is required")
	}
	name, err := checkName(rawName)
	if err != nil {
		return err
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return err
	}
	// The mail goes out inside the transaction: when it cannot be sent, no account is left behind
	// blocking the email for the cooldown.
	return s.st.Tx(ctx, func(q *db.Queries) error {
		if _, err := q.DeleteStaleInactiveUser(ctx, db.DeleteStaleInactiveUserParams{
			Email: email, CreatedBefore: time.Now().Add(-SignupCooldown),
		}); err != nil {
			return internal("replace stale signup", err)
		}
		if existing, err := q.GetUserByEmail(ctx, email); err == nil {
			return signupConflict(existing.Status)
		} else if !store.IsNotFound(err) {
			return internal("read user", err)
		}
		u, err := q.CreateUser(ctx, db.CreateUserParams{Email: email, Name: name, PasswordHash: &hash, Status: store.UserInactive})
		if store.IsUniqueViolation(err, "") {
			return signupConflict(store.UserInactive)
		}
		if err != nil {
			return internal("create user", err)
		}
		tok, err := s.newToken(ctx, q, u.ID, store.TokenActivation, auth.ActivationToken)
		if err != nil {
			return err
		}
		link := s.link("/activate", tok)
		if err := s.mailer.Send(ctx, activationMail(u, link)); err != nil {
			return apierr.New(http.StatusInternalServerError, apierr.CodeInternalError,
				"the activation email could not be sent; try again later").WithCause(err)
		}
		return nil
	})
}

func signupConflict(status string) error {
	if status == store.UserInactive {
		return apierr.SignupCooldown("an activation email was sent to this address less than 30 minutes ago: " +
			"use its link, or sign up again once it has expired")
	}
	return apierr.EmailTaken("an account with this email already exists")
}

// newToken stores a new one-time token of kind for user (replacing its unused ones) and returns the
// secret to mail.
func (s *Service) newToken(ctx context.Context, q *db.Queries, user uuid.UUID, kind string, k auth.TokenKind) (string, error) {
	if _, err := q.DeleteUnusedOneTimeTokens(ctx, db.DeleteUnusedOneTimeTokensParams{UserID: user, Kind: kind}); err != nil {
		return "", internal("delete unused tokens", err)
	}
	tok := k.New()
	if _, err := q.CreateOneTimeToken(ctx, db.CreateOneTimeTokenParams{
		Kind: kind, UserID: user, TokenHash: tok.Hash, TTLSeconds: int32(k.TTL / time.Second),
	}); err != nil {
		return "", internal("store token", err)
	}
	return tok.Plain, nil
}

// link is {dashboard}{path}?token=<token>.
func (s *Service) link(path, token string) string {
	return s.dashboard + path + "?" + url.Values{"token": {token}}.Encode()
}

func activationMail(u db.User, link string) mail.Message {
	return mail.Message{
		To:      u.Email,
		Subject: "Activate your Wrenn account",
		Text: "Hello " + u.Name + ",\n\n" +
			"Welcome to Wrenn. Open this link within 30 minutes to activate your account:\n\n" +
			link + "\n\n" +
			"If you did not sign up for Wrenn, ignore this email.\n",
	}
}

func resetMail(u db.User, link string) mail.Message {
	return mail.Message{
		To:      u.Email,
		Subject: "Reset your Wrenn password",
		Text: "Hello " + u.Name + ",\n\n" +
			"Open this link within 15 minutes to choose a new password:\n\n" +
			link + "\n\n" +
			"If you did not ask for a password reset, ignore this email; your password stays as it is.\n",
	}
}

// POST /v1/auth/activate {token} → 200 AuthResponse.
func (s *Service) handleActivate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token string `json:"token"`
	}
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	ip := limitKey{s.limits.tokenIP, clientIP(r)}
	if err := blocked(ip); err != nil {
		apierr.Write(w, r, err)
		return
	}
	res, err := s.Activate(r.Context(), strings.TrimSpace(req.Token))
	if err != nil {
		if apierr.From(err).Code == apierr.CodeInvalidToken {
			_ = take(ip)
		}
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, res)
}

const msgInvalidToken = "invalid or expired token: request a new one"

// Activate uses an activation token: the account becomes active, gets its default team when it has
// none, and is signed in. Activation never makes an admin (docs/security.md).
func (s *Service) Activate(ctx context.Context, token string) (AuthResponse, error) {
	if token == "" {
		return AuthResponse{}, apierr.InvalidRequest("token is required")
	}
	if !auth.ActivationToken.Valid(token) {
		return AuthResponse{}, apierr.InvalidToken(msgInvalidToken)
	}
	hash := auth.HashSecret(token)
	var res AuthResponse
	err := s.st.Tx(ctx, func(q *db.Queries) error {
		t, err := q.ConsumeOneTimeToken(ctx, db.ConsumeOneTimeTokenParams{TokenHash: hash, Kind: store.TokenActivation})
		if store.IsNotFound(err) {
			return s.usedActivationToken(ctx, q, hash)
		}
		if err != nil {
			return internal("consume token", err)
		}
		u, err := activate(ctx, q, t.UserID)
		if err != nil {
			return err
		}
		res, err = s.issueDefault(ctx, q, u)
		return err
	})
	return res, err
}

// usedActivationToken explains why an activation token could not be used: 400 already_activated when
// it was used and its account is active, else 400 invalid_token.
func (s *Service) usedActivationToken(ctx context.Context, q *db.Queries, hash string) error {
	t, err := q.GetOneTimeTokenByHash(ctx, db.GetOneTimeTokenByHashParams{TokenHash: hash, Kind: store.TokenActivation})
	if store.IsNotFound(err) {
		return apierr.InvalidToken(msgInvalidToken)
	}
	if err != nil {
		return internal("read token", err)
	}
	u, err := q.GetUserByID(ctx, t.UserID)
	if err != nil && !store.IsNotFound(err) {
		return internal("read user", err)
	}
	if err == nil && t.UsedAt != nil && u.Status == store.UserActive {
		return apierr.AlreadyActivated("this account is already activated: log in")
	}
	return apierr.InvalidToken(msgInvalidToken)
}

// activate makes inactive user active (store.ActivateUser) and gives it a default team "<name>'s Team" when it has none. q must be a transaction.
func activate(ctx context.Context, q *db.Queries, user uuid.UUID) (db.User, error) {
	u, err := store.ActivateUser(ctx, q, user)
	if store.IsNotFound(err) {
		cur, rerr := q.GetUserByID(ctx, user)
		if rerr == nil && cur.Status == store.UserActive {
			return db.User{}, apierr.AlreadyActivated("this account is already activated: log in")
		}
		return db.User{}, apierr.InvalidToken(msgInvalidToken)
	}
	if err != nil {
		return db.User{}, internal("activate user", err)
	}
	if _, err := q.GetDefaultTeamForUser(ctx, u.ID); err == nil {
		return u, nil
	} else if !store.IsNotFound(err) {
		return db.User{}, internal("read teams", err)
	}
	if _, err := createTeam(ctx, q, u.ID, u.Name+"'s Team"); err != nil {
		return db.User{}, err
	}
	return u, nil
}

// createTeam creates a team named name owned by owner.
func createTeam(ctx context.Context, q *db.Queries, owner uuid.UUID, name string) (db.Team, error) {
	t, err := q.CreateTeam(ctx, name)
	if err != nil {
		return db.Team{}, internal("create team", err)
	}
	if _, err := q.AddTeamMember(ctx, db.AddTeamMemberParams{TeamID: t.ID, UserID: owner, Role: store.RoleOwner}); err != nil {
		return db.Team{}, internal("add team owner", err)
	}
	return t, nil
}

// POST /v1/auth/login {email, password} → 200 AuthResponse.
func (s *Service) handleLogin(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	keys := []limitKey{{s.limits.loginIP, clientIP(r)}, {s.limits.loginAccount, normalizeEmail(req.Email)}}
	if err := blocked(keys...); err != nil {
		apierr.Write(w, r, err)
		return
	}
	res, err := s.Login(r.Context(), req.Email, req.Password)
	if err != nil {
		if apierr.From(err).Code == apierr.CodeUnauthorized {
			_ = take(keys...)
		}
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, res)
}

// Login checks an email and password and signs the user in to its default team. Unknown, deleted and
// password-less accounts and wrong passwords all answer 401 "invalid email or password", in the same
// time; inactive and disabled accounts with the right password answer 403.
func (s *Service) Login(ctx context.Context, rawEmail, password string) (AuthResponse, error) {
	email := normalizeEmail(rawEmail)
	if email == "" || password == "" {
		return AuthResponse{}, apierr.InvalidRequest("email and password are required")
	}
	u, err := s.st.GetUserByEmail(ctx, email)
	if err != nil && !store.IsNotFound(err) {
		return AuthResponse{}, internal("read user", err)
	}
	hash := ""
	if err == nil && u.PasswordHash != nil {
		hash = *u.PasswordHash
	}
	if !auth.CheckPassword(hash, password) || u.Status == store.UserDeleted {
		return AuthResponse{}, apierr.Unauthorized(msgInvalidCredentials)
	}
	switch u.Status {
	case store.UserInactive:
		return AuthResponse{}, apierr.AccountNotActivated("account is not activated: open the link in the activation email")
	case store.UserDisabled:
		return AuthResponse{}, apierr.AccountDisabled("account is disabled: contact your administrator")
	}
	return s.issueDefault(ctx, s.st.Queries, u)
}

// POST /v1/auth/switch-team {team_id} → 200 AuthResponse scoped to that team.
func (s *Service) handleSwitchTeam(w http.ResponseWriter, r *http.Request) {
	var req struct {
		TeamID string `json:"team_id"`
	}
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	id := httpapi.Identity(r)
	res, err := s.switchTeam(r.Context(), id, strings.TrimSpace(req.TeamID))
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, res)
}

func (s *Service) switchTeam(ctx context.Context, id auth.Identity, raw string) (AuthResponse, error) {
	if raw == "" {
		return AuthResponse{}, apierr.InvalidRequest("team_id is required")
	}
	team, err := ids.Team.Parse(raw)
	if err != nil {
		return AuthResponse{}, apierr.InvalidRequest("invalid team ID")
	}
	u, err := s.userOf(ctx, id)
	if err != nil {
		return AuthResponse{}, err
	}
	if _, err := s.st.GetTeam(ctx, team); store.IsNotFound(err) {
		return AuthResponse{}, apierr.NotFound("team not found")
	} else if err != nil {
		return AuthResponse{}, internal("read team", err)
	}
	m, err := s.st.GetTeamMember(ctx, db.GetTeamMemberParams{TeamID: team, UserID: u.ID})
	if store.IsNotFound(err) {
		return AuthResponse{}, apierr.Forbidden("you are not a member of this team")
	}
	if err != nil {
		return AuthResponse{}, internal("read membership", err)
	}
	return s.issue(u, team, m.Role)
}

// POST /v1/me/password/reset {email} → 204 always (no account enumeration).
func (s *Service) handleResetPassword(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Email string `json:"email"`
	}
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	email := normalizeEmail(req.Email)
	if email == "" {
		apierr.Write(w, r, apierr.InvalidRequest("email is required"))
		return
	}
	if err := take(limitKey{s.limits.resetIP, clientIP(r)}, limitKey{s.limits.resetAccount, email}); err != nil {
		apierr.Write(w, r, err)
		return
	}
	s.RequestPasswordReset(r.Context(), email)
	httpapi.NoContent(w)
}

// RequestPasswordReset mails a password-reset link when email belongs to an active account. It never
// reports whether it did: the mail is sent in the background (failures are logged) so that the answer
// takes the same time either way.
func (s *Service) RequestPasswordReset(ctx context.Context, email string) {
	u, err := s.st.GetUserByEmail(ctx, normalizeEmail(email))
	if err != nil {
		if !store.IsNotFound(err) {
			s.log.ErrorContext(ctx, "password reset: read user", "err", err)
		}
		return
	}
	if u.Status != store.UserActive {
		return
	}
	tok, err := s.newToken(ctx, s.st.Queries, u.ID, store.TokenPasswordReset, auth.PasswordResetToken)
	if err != nil {
		s.log.ErrorContext(ctx, "password reset: store token", "user_id", ids.User.Format(u.ID), "err", err)
		return
	}
	msg := resetMail(u, s.link("/reset-password", tok))
	s.mails.Add(1)
	go func() {
		defer s.mails.Done()
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), mailTimeout)
		defer cancel()
		if err := s.mailer.Send(mctx, msg); err != nil {
			s.log.Error("password reset: send mail", "user_id", ids.User.Format(u.ID), "err", err)
		}
	}()
}

// POST /v1/me/password/reset/confirm {token, new_password} → 204.
func (s *Service) handleResetPasswordConfirm(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token       string `json:"token"`
		NewPassword string `json:"new_password"`
	}
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	ip := limitKey{s.limits.tokenIP, clientIP(r)}
	if err := blocked(ip); err != nil {
		apierr.Write(w, r, err)
		return
	}
	if err := s.ConfirmPasswordReset(r.Context(), strings.TrimSpace(req.Token), req.NewPassword); err != nil {
		if apierr.From(err).Code == apierr.CodeInvalidToken {
			_ = take(ip)
		}
		apierr.Write(w, r, err)
		return
	}
	httpapi.NoContent(w)
}

// ConfirmPasswordReset uses a password-reset token to set a new password and ends every session of
// the user (API keys stay).
func (s *Service) ConfirmPasswordReset(ctx context.Context, token, newPassword string) error {
	if token == "" {
		return apierr.InvalidRequest("token is required")
	}
	if newPassword == "" {
		return apierr.InvalidRequest("new_password is required")
	}
	hash, err := auth.HashPassword(newPassword)
	if err != nil {
		return err
	}
	if !auth.PasswordResetToken.Valid(token) {
		return apierr.InvalidToken(msgInvalidToken)
	}
	return s.st.Tx(ctx, func(q *db.Queries) error {
		t, err := q.ConsumeOneTimeToken(ctx, db.ConsumeOneTimeTokenParams{TokenHash: auth.HashSecret(token), Kind: store.TokenPasswordReset})
		if store.IsNotFound(err) {
			return apierr.InvalidToken(msgInvalidToken)
		}
		if err != nil {
			return internal("consume token", err)
		}
		u, err := q.GetUserByID(ctx, t.UserID)
		if err != nil && !store.IsNotFound(err) {
			return internal("read user", err)
		}
		if err != nil || u.Status != store.UserActive {
			return apierr.InvalidToken(msgInvalidToken)
		}
		if _, err := q.SetUserPassword(ctx, db.SetUserPasswordParams{PasswordHash: hash, ID: u.ID}); err != nil {
			return internal("set password", err)
		}
		if _, err := q.EndUserSessions(ctx, u.ID); err != nil {
			return internal("end sessions", err)
		}
		return nil
	})
}
