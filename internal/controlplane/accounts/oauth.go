package accounts

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// OAuth sign-in (docs/api.md, "OAuth sign-in"; docs/security.md, "OAuth state").
const (
	// stateCookie carries <nonce>:<hmac> between the start of a sign-in and its callback.
	stateCookie = "oauth_state"
	// linkCookie carries <user_id>.<session_version>:<hmac> in link mode (bound to the state nonce).
	linkCookie = "oauth_link"
	// StateLifetime is how long a sign-in may take at the provider.
	StateLifetime = 600 * time.Second
)

// OAuth error reasons answered to the dashboard (?error= or ?connect_error=).
const (
	reasonAccessDenied       = "access_denied"
	reasonInvalidState       = "invalid_state"
	reasonMissingCode        = "missing_code"
	reasonExchangeFailed     = "exchange_failed"
	reasonEmailTaken         = "email_taken"
	reasonAccountDeactivated = "account_deactivated"
	reasonDBError            = "db_error"
	reasonInternalError      = "internal_error"
)

// oauthError is a failed callback: reason goes to the dashboard, cause to the log.
type oauthError struct {
	reason string
	cause  error
}

func (e *oauthError) Error() string {
	if e.cause == nil {
		return "oauth: " + e.reason
	}
	return "oauth: " + e.reason + ": " + e.cause.Error()
}

func (e *oauthError) Unwrap() error { return e.cause }

func failOAuth(reason string, cause error) error { return &oauthError{reason: reason, cause: cause} }

// registerOAuth adds the OAuth routes when a provider is configured; GET /v1/auth/providers always.
func (s *Service) registerOAuth(rt *httpapi.Router) {
	rt.Handle(http.MethodGet, "/v1/auth/providers", httpapi.KindNone, s.handleListProviders)
	if len(s.providers) == 0 {
		return
	}
	for _, prefix := range []string{"/auth/oauth", "/v1/auth/oauth"} {
		rt.Handle(http.MethodGet, prefix+"/{provider}", httpapi.KindNone, httpapi.Errors(s.handleOAuthStart))
		rt.Handle(http.MethodGet, prefix+"/{provider}/callback", httpapi.KindNone, httpapi.Errors(s.handleOAuthCallback))
	}
}

// GET /v1/auth/providers → {"providers":[…]}: the configured OAuth providers, for the dashboard.
func (s *Service) handleListProviders(w http.ResponseWriter, _ *http.Request) {
	names := make([]string, 0, len(s.providers))
	for n := range s.providers {
		names = append(names, n)
	}
	slices.Sort(names)
	httpapi.WriteJSON(w, http.StatusOK, map[string][]string{"providers": names})
}

// provider returns the configured provider of the {provider} path value (404 otherwise).
func (s *Service) provider(r *http.Request) (Provider, error) {
	name := r.PathValue("provider")
	p, ok := s.providers[name]
	if !ok {
		return nil, apierr.NotFound("OAuth provider " + strconv.Quote(name) + " is not configured")
	}
	return p, nil
}

// callbackURL is where the provider returns the browser to.
func (s *Service) callbackURL(p Provider) string {
	return s.publicURL + "/auth/oauth/" + p.Name() + "/callback"
}

// GET /auth/oauth/{provider} → 302 to the provider, with a new state cookie.
func (s *Service) handleOAuthStart(w http.ResponseWriter, r *http.Request) error {
	p, err := s.provider(r)
	if err != nil {
		return err
	}
	nonce, err := s.startState(w)
	if err != nil {
		return err
	}
	s.clearCookie(w, linkCookie) // a sign-in, not a link
	http.Redirect(w, r, p.AuthCodeURL(nonce, s.callbackURL(p)), http.StatusFound)
	return nil
}

// GET /v1/me/providers/{provider}/connect → {"auth_url"}: starts linking the provider to the caller.
func (s *Service) handleConnectProvider(w http.ResponseWriter, r *http.Request) error {
	p, err := s.provider(r)
	if err != nil {
		return err
	}
	u, err := s.userOf(r.Context(), httpapi.Identity(r))
	if err != nil {
		return err
	}
	nonce, err := s.startState(w)
	if err != nil {
		return err
	}
	s.setCookie(w, linkCookie, s.linkValue(nonce, ids.User.Format(u.ID), int64(u.SessionVersion)), StateLifetime)
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"auth_url": p.AuthCodeURL(nonce, s.callbackURL(p))})
	return nil
}

// GET /auth/oauth/{provider}/callback → 302 to the dashboard: signed in (sign-in mode) or linked (link
// mode), or the reason it failed.
func (s *Service) handleOAuthCallback(w http.ResponseWriter, r *http.Request) error {
	p, err := s.provider(r)
	if err != nil {
		return err
	}
	state, _ := r.Cookie(stateCookie)
	link, _ := r.Cookie(linkCookie)
	s.clearCookie(w, stateCookie)
	s.clearCookie(w, linkCookie)

	linking := link != nil
	var target string
	res, err := s.oauthCallback(r.Context(), p, r.URL.Query(), state, link)
	switch {
	case err == nil && linking:
		target = s.dashboard + "/dashboard/settings?" + url.Values{"connected": {p.Name()}}.Encode()
	case err == nil:
		target = s.dashboard + "/auth/" + p.Name() + "/callback?" + url.Values{
			"token": {res.Token}, "user_id": {res.UserID}, "team_id": {res.TeamID}, "email": {res.Email}, "name": {res.Name},
		}.Encode()
	default:
		reason := reasonInternalError
		var oe *oauthError
		if errors.As(err, &oe) {
			reason = oe.reason
		}
		s.log.WarnContext(r.Context(), "oauth callback failed", "provider", p.Name(), "link", linking, "reason", reason, "err", err)
		if linking {
			target = s.dashboard + "/dashboard/settings?" + url.Values{"connect_error": {reason}}.Encode()
		} else {
			target = s.dashboard + "/auth/" + p.Name() + "/callback?" + url.Values{"error": {reason}}.Encode()
		}
	}
	http.Redirect(w, r, target, http.StatusFound)
	return nil
}

// oauthCallback checks the state, asks the provider who signed in, and signs in (no link cookie) or
// links the provider to the user of the link cookie. Its errors are *oauthError.
func (s *Service) oauthCallback(ctx context.Context, p Provider, q url.Values, state, link *http.Cookie) (AuthResponse, error) {
	nonce, ok := s.checkState(state, q.Get("state"))
	if !ok {
		return AuthResponse{}, failOAuth(reasonInvalidState, nil)
	}
	var linkUser string
	var linkVersion int64
	if link != nil {
		if linkUser, linkVersion, ok = s.checkLink(link.Value, nonce); !ok {
			return AuthResponse{}, failOAuth(reasonInvalidState, errors.New("link cookie does not match"))
		}
	}
	if e := q.Get("error"); e != "" {
		return AuthResponse{}, failOAuth(reasonAccessDenied, errors.New("provider answered error "+strconv.Quote(e)))
	}
	code := q.Get("code")
	if code == "" {
		return AuthResponse{}, failOAuth(reasonMissingCode, nil)
	}
	ident, err := p.Identity(ctx, code, s.callbackURL(p))
	if err != nil {
		return AuthResponse{}, failOAuth(reasonExchangeFailed, err)
	}
	if link != nil {
		return AuthResponse{}, s.linkIdentity(ctx, p.Name(), ident, linkUser, linkVersion)
	}
	return s.signInWith(ctx, p.Name(), ident)
}

// signInWith signs in the user linked to ident; else the user whose email is ident's verified email
// (linking ident); else a new active user with a team of its own. Never an admin (docs/security.md).
func (s *Service) signInWith(ctx context.Context, provider string, ident ProviderIdentity) (AuthResponse, error) {
	var res AuthResponse
	err := s.st.Tx(ctx, func(q *db.Queries) error {
		linked, err := q.GetUserIdentity(ctx, db.GetUserIdentityParams{Provider: provider, ProviderUserID: ident.ID})
		switch {
		case err == nil:
			u, err := q.GetUserByID(ctx, linked.UserID)
			if err != nil {
				return failOAuth(reasonDBError, err)
			}
			if u.Status != store.UserActive {
				return failOAuth(reasonAccountDeactivated, nil)
			}
			res, err = s.oauthIssue(ctx, q, u)
			return err
		case !store.IsNotFound(err):
			return failOAuth(reasonDBError, err)
		}

		email := normalizeEmail(ident.Email)
		if email == "" || checkEmail(email) != nil {
			return failOAuth(reasonExchangeFailed, errors.New("the provider has no verified primary email"))
		}
		u, err := q.GetUserByEmail(ctx, email)
		switch {
		case store.IsNotFound(err):
			u, err = s.createOAuthUser(ctx, q, email, ident)
			if err != nil {
				return err
			}
		case err != nil:
			return failOAuth(reasonDBError, err)
		case u.Status == store.UserInactive:
			// A signup never activated proves nothing (its password was set by whoever signed up): it
			// is replaced, so that nobody can pre-register an address and take the account over.
			if _, err := q.DeleteStaleInactiveUser(ctx, db.DeleteStaleInactiveUserParams{Email: email, CreatedBefore: time.Now().Add(time.Hour)}); err != nil {
				return failOAuth(reasonDBError, err)
			}
			if u, err = s.createOAuthUser(ctx, q, email, ident); err != nil {
				return err
			}
		case u.Status != store.UserActive:
			return failOAuth(reasonAccountDeactivated, nil)
		}
		if err := addIdentity(ctx, q, u, provider, ident); err != nil {
			return err
		}
		res, err = s.oauthIssue(ctx, q, u)
		return err
	})
	return res, err
}

// createOAuthUser creates an active user without a password, and its team "<name>'s Team" (like
// activation).
func (s *Service) createOAuthUser(ctx context.Context, q *db.Queries, email string, ident ProviderIdentity) (db.User, error) {
	u, err := q.CreateUser(ctx, db.CreateUserParams{Email: email, Name: oauthName(ident, email), Status: store.UserActive})
	if store.IsUniqueViolation(err, "") {
		return db.User{}, failOAuth(reasonEmailTaken, err)
	}
	if err != nil {
		return db.User{}, failOAuth(reasonDBError, err)
	}
	if _, err := createTeam(ctx, q, u.ID, u.Name+"'s Team"); err != nil {
		return db.User{}, failOAuth(reasonDBError, err)
	}
	return u, nil
}

// addIdentity links ident to u: email_taken when u already has another identity at the provider.
func addIdentity(ctx context.Context, q *db.Queries, u db.User, provider string, ident ProviderIdentity) error {
	idents, err := q.ListUserIdentities(ctx, u.ID)
	if err != nil {
		return failOAuth(reasonDBError, err)
	}
	for _, i := range idents {
		if i.Provider == provider {
			return failOAuth(reasonEmailTaken, errors.New("the account is linked to another "+provider+" user"))
		}
	}
	var email *string
	if ident.Email != "" {
		e := normalizeEmail(ident.Email)
		email = &e
	}
	_, err = q.CreateUserIdentity(ctx, db.CreateUserIdentityParams{UserID: u.ID, Provider: provider, ProviderUserID: ident.ID, Email: email})
	if store.IsUniqueViolation(err, "") {
		return failOAuth(reasonEmailTaken, err)
	}
	if err != nil {
		return failOAuth(reasonDBError, err)
	}
	return nil
}

// linkIdentity links ident to the user who started link mode, if that session is still valid.
func (s *Service) linkIdentity(ctx context.Context, provider string, ident ProviderIdentity, userID string, version int64) error {
	uid, err := ids.User.Parse(userID)
	if err != nil {
		return failOAuth(reasonInvalidState, err)
	}
	return s.st.Tx(ctx, func(q *db.Queries) error {
		u, err := q.GetUserByID(ctx, uid)
		if store.IsNotFound(err) {
			return failOAuth(reasonAccountDeactivated, err)
		}
		if err != nil {
			return failOAuth(reasonDBError, err)
		}
		if u.Status != store.UserActive {
			return failOAuth(reasonAccountDeactivated, nil)
		}
		if int64(u.SessionVersion) != version {
			return failOAuth(reasonInvalidState, errors.New("the session that started linking has ended"))
		}
		linked, err := q.GetUserIdentity(ctx, db.GetUserIdentityParams{Provider: provider, ProviderUserID: ident.ID})
		switch {
		case err == nil && linked.UserID == u.ID:
			return nil // already linked
		case err == nil:
			return failOAuth(reasonEmailTaken, errors.New("the "+provider+" user is linked to another account"))
		case !store.IsNotFound(err):
			return failOAuth(reasonDBError, err)
		}
		return addIdentity(ctx, q, u, provider, ident)
	})
}

// oauthIssue signs u in to its default team, with the callback's reasons for failures.
func (s *Service) oauthIssue(ctx context.Context, q *db.Queries, u db.User) (AuthResponse, error) {
	res, err := s.issueDefault(ctx, q, u)
	if err != nil {
		return AuthResponse{}, failOAuth(reasonInternalError, err)
	}
	return res, nil
}

// oauthName is a new user's display name: the provider's name, else its login, else the email's
// local part; at most maxNameLength characters.
func oauthName(ident ProviderIdentity, email string) string {
	for _, n := range []string{ident.Name, ident.Login, strings.SplitN(email, "@", 2)[0]} {
		n = strings.Join(strings.Fields(strings.ToValidUTF8(n, "")), " ")
		if n == "" {
			continue
		}
		for utf8.RuneCountInString(n) > maxNameLength {
			_, size := utf8.DecodeLastRuneInString(n)
			n = n[:len(n)-size]
		}
		if name, err := checkName(n); err == nil {
			return name
		}
	}
	return "User"
}

// startState sets a new state cookie and returns its nonce (the provider's state parameter). The
// nonce carries its expiry: <32 hex>.<unix seconds>.
func (s *Service) startState(w http.ResponseWriter) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", apierr.Internal(err)
	}
	nonce := hex.EncodeToString(b[:]) + "." + strconv.FormatInt(time.Now().Add(StateLifetime).Unix(), 10)
	s.setCookie(w, stateCookie, nonce+":"+s.mac("state", nonce), StateLifetime)
	return nonce, nil
}

// checkState verifies the state cookie (its HMAC and expiry) against the provider's state parameter
// and returns the nonce.
func (s *Service) checkState(c *http.Cookie, param string) (string, bool) {
	if c == nil || param == "" {
		return "", false
	}
	nonce, sum, ok := strings.Cut(c.Value, ":")
	if !ok || !hmac.Equal([]byte(sum), []byte(s.mac("state", nonce))) || !hmac.Equal([]byte(nonce), []byte(param)) {
		return "", false
	}
	_, exp, ok := strings.Cut(nonce, ".")
	unix, err := strconv.ParseInt(exp, 10, 64)
	if !ok || err != nil || time.Now().Unix() > unix {
		return "", false
	}
	return nonce, true
}

// linkValue is the link cookie of user (at session version) for the state nonce.
func (s *Service) linkValue(nonce, user string, version int64) string {
	v := user + "." + strconv.FormatInt(version, 10)
	return v + ":" + s.mac("link", nonce+"|"+v)
}

// checkLink verifies a link cookie against the state nonce.
func (s *Service) checkLink(value, nonce string) (string, int64, bool) {
	v, sum, ok := strings.Cut(value, ":")
	if !ok || !hmac.Equal([]byte(sum), []byte(s.mac("link", nonce+"|"+v))) {
		return "", 0, false
	}
	user, ver, ok := strings.Cut(v, ".")
	version, err := strconv.ParseInt(ver, 10, 64)
	if !ok || err != nil {
		return "", 0, false
	}
	return user, version, true
}

// mac is the hex HMAC-SHA256 of purpose and msg under the OAuth key.
func (s *Service) mac(purpose, msg string) string {
	h := hmac.New(sha256.New, s.oauthKey)
	h.Write([]byte(purpose + "\x00" + msg))
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Service) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: int(maxAge / time.Second),
		HttpOnly: true, Secure: s.secureCookies, SameSite: http.SameSiteLaxMode,
	})
}

func (s *Service) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secureCookies, SameSite: http.SameSiteLaxMode,
	})
}
