// Package fakegithub is a local stand-in for GitHub's OAuth pages and REST API, for tests of the
// control plane's GitHub sign-in: its authorization page approves (or denies) at once for the user set
// with As, and its token endpoint and API answer like GitHub's for the few fields the control plane reads.
package fakegithub

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// The OAuth app the fake accepts.
const (
	ClientID     = "fake-client-id"
	ClientSecret = "fake-client-secret"
)

// User is an account at the fake GitHub.
type User struct {
	ID       int64
	Login    string
	Name     string
	Email    string // the primary email
	Verified bool   // whether the primary email is verified
}

// Behavior is how the next authorizations and exchanges go.
type Behavior struct {
	Deny      bool // the authorization page returns error=access_denied
	NoCode    bool // the authorization page returns without a code
	FailToken bool // the token endpoint refuses every code
}

// Server is a running fake; it is closed when the test ends.
type Server struct {
	srv *httptest.Server

	mu        sync.Mutex
	next      User
	behavior  Behavior
	codes     map[string]User
	tokens    map[string]User
	redirects []string
}

// New starts a fake GitHub on loopback.
func New(t testing.TB) *Server {
	t.Helper()
	g := &Server{codes: map[string]User{}, tokens: map[string]User{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login/oauth/authorize", g.authorize)
	mux.HandleFunc("POST /login/oauth/access_token", g.token)
	mux.HandleFunc("GET /api/user", g.user)
	mux.HandleFunc("GET /api/user/emails", g.emails)
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

// URL is the fake's base URL.
func (g *Server) URL() string { return g.srv.URL }

// AuthURL, TokenURL and APIURL are the control plane's --github-*-url values for the fake.
func (g *Server) AuthURL() string  { return g.srv.URL + "/login/oauth/authorize" }
func (g *Server) TokenURL() string { return g.srv.URL + "/login/oauth/access_token" }
func (g *Server) APIURL() string   { return g.srv.URL + "/api" }

// As makes u the user the next authorizations approve, with the normal behavior.
func (g *Server) As(u User) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.next, g.behavior = u, Behavior{}
}

// Set changes the behavior of the next authorizations and exchanges.
func (g *Server) Set(b Behavior) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.behavior = b
}

// Redirects lists the redirect_uri of every authorization so far.
func (g *Server) Redirects() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.redirects...)
}

func (g *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	g.mu.Lock()
	defer g.mu.Unlock()
	if q.Get("client_id") != ClientID || q.Get("state") == "" || q.Get("response_type") != "code" ||
		!strings.Contains(q.Get("scope"), "user:email") {
		http.Error(w, "bad authorization request "+r.URL.RawQuery, http.StatusBadRequest)
		return
	}
	g.redirects = append(g.redirects, q.Get("redirect_uri"))
	back := url.Values{"state": {q.Get("state")}}
	switch {
	case g.behavior.Deny:
		back.Set("error", "access_denied")
	case !g.behavior.NoCode:
		code := fmt.Sprintf("code-%d-%d", g.next.ID, len(g.codes)+len(g.tokens))
		g.codes[code] = g.next
		back.Set("code", code)
	}
	http.Redirect(w, r, q.Get("redirect_uri")+"?"+back.Encode(), http.StatusFound)
}

func (g *Server) token(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	code := r.PostFormValue("code")
	u, ok := g.codes[code]
	delete(g.codes, code) // codes are used once
	w.Header().Set("Content-Type", "application/json")
	if g.behavior.FailToken || !ok || r.PostFormValue("client_id") != ClientID || r.PostFormValue("client_secret") != ClientSecret {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"bad_verification_code"}`))
		return
	}
	tok := "tok-" + code
	g.tokens[tok] = u
	_ = json.NewEncoder(w).Encode(map[string]string{"access_token": tok, "token_type": "bearer", "scope": "read:user,user:email"})
}

func (g *Server) caller(w http.ResponseWriter, r *http.Request) (User, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	u, ok := g.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	if !ok {
		http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
	}
	return u, ok
}

func (g *Server) user(w http.ResponseWriter, r *http.Request) {
	if u, ok := g.caller(w, r); ok {
		_ = json.NewEncoder(w).Encode(map[string]any{"id": u.ID, "login": u.Login, "name": u.Name})
	}
}

func (g *Server) emails(w http.ResponseWriter, r *http.Request) {
	if u, ok := g.caller(w, r); ok {
		_ = json.NewEncoder(w).Encode([]map[string]any{
			{"email": "noreply-" + u.Login + "@users.example.test", "primary": false, "verified": true},
			{"email": u.Email, "primary": true, "verified": u.Verified},
		})
	}
}

// Browser is a cookie-keeping client that follows redirects until one to a URL under stopAt (the
// dashboard), which it returns unfollowed.
func Browser(t testing.TB, stopAt string) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), stopAt) || len(via) > 10 {
			return http.ErrUseLastResponse
		}
		return nil
	}}
}

// Land runs req in b (a Browser stopping at stopAt) and returns the URL under stopAt the flow ends at.
func Land(t testing.TB, b *http.Client, req *http.Request, stopAt string) *url.URL {
	t.Helper()
	res, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc, err := res.Location()
	if res.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), stopAt) {
		t.Fatalf("flow ended with %d at %v (%v), want a redirect to %s", res.StatusCode, loc, err, stopAt)
	}
	return loc
}
