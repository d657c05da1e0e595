package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/endpoints"
)

// GitHubConfig configures GitHub sign-in (docs/configuration.md). The URLs default to GitHub's; tests
// point them at a fake.
type GitHubConfig struct {
	ClientID     string
	ClientSecret string
	AuthURL      string // authorization page; "" = GitHub's
	TokenURL     string // code exchange; "" = GitHub's
	APIURL       string // REST API base (/user, /user/emails); "" = DefaultGitHubAPIURL
	// HTTPClient makes the exchange and API calls; nil = a client with providerTimeout.
	HTTPClient *http.Client
}

// DefaultGitHubAPIURL is the base of GitHub's REST API.
const DefaultGitHubAPIURL = "https://api.github.com"

// providerTimeout bounds each call to a provider (code exchange, profile).
const providerTimeout = 15 * time.Second

// maxProviderBody bounds a provider's API answer.
const maxProviderBody = 1 << 20

// Provider is an OAuth sign-in provider (docs/api.md).
type Provider interface {
	// Name is the {provider} of the routes, e.g. "github".
	Name() string
	// AuthCodeURL is the provider's authorization page for state, returning to redirectURL.
	AuthCodeURL(state, redirectURL string) string
	// Identity exchanges an authorization code for the user's identity at the provider.
	Identity(ctx context.Context, code, redirectURL string) (ProviderIdentity, error)
}

// ProviderIdentity is who signed in at a provider.
type ProviderIdentity struct {
	ID    string // the provider's stable user id
	Login string // the provider's user name
	Name  string // display name; may be empty
	// Email is the verified primary email; "" when the provider has none.
	Email string
}

type gitHub struct {
	oauth  oauth2.Config
	api    string
	client *http.Client
}

// NewGitHub returns the GitHub provider; ClientID and ClientSecret are required, the URLs must be
// absolute http(s) URLs when set.
func NewGitHub(cfg GitHubConfig) (Provider, error) {
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("github: client id and client secret are both required")
	}
	ep := endpoints.GitHub
	ep.AuthStyle = oauth2.AuthStyleInParams
	api := DefaultGitHubAPIURL
	for _, u := range []struct {
		name string
		val  string
		dst  *string
	}{{"auth URL", cfg.AuthURL, &ep.AuthURL}, {"token URL", cfg.TokenURL, &ep.TokenURL}, {"API URL", cfg.APIURL, &api}} {
		if u.val == "" {
			continue
		}
		if err := checkAbsURL(u.val); err != nil {
			return nil, fmt.Errorf("github %s: %w", u.name, err)
		}
		*u.dst = u.val
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: providerTimeout}
	}
	return &gitHub{
		oauth:  oauth2.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Endpoint: ep, Scopes: []string{"read:user", "user:email"}},
		api:    strings.TrimRight(api, "/"),
		client: client,
	}, nil
}

// checkAbsURL accepts absolute http(s) URLs.
func checkAbsURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	return nil
}

func (g *gitHub) Name() string { return "github" }

func (g *gitHub) AuthCodeURL(state, redirectURL string) string {
	c := g.oauth
	c.RedirectURL = redirectURL
	return c.AuthCodeURL(state)
}

func (g *gitHub) Identity(ctx context.Context, code, redirectURL string) (ProviderIdentity, error) {
	c := g.oauth
	c.RedirectURL = redirectURL
	ctx = context.WithValue(ctx, oauth2.HTTPClient, g.client)
	tok, err := c.Exchange(ctx, code)
	if err != nil {
		return ProviderIdentity{}, fmt.Errorf("exchange code: %w", err)
	}
	hc := c.Client(ctx, tok)
	var user struct {
		ID    int64  `json:"id"`
		Login string `json:"login"`
		Name  string `json:"name"`
	}
	if err := g.get(ctx, hc, "/user", &user); err != nil {
		return ProviderIdentity{}, err
	}
	if user.ID <= 0 {
		return ProviderIdentity{}, errors.New("github /user: no user id")
	}
	var emails []struct {
		Email    string `json:"email"`
		Primary  bool   `json:"primary"`
		Verified bool   `json:"verified"`
	}
	if err := g.get(ctx, hc, "/user/emails", &emails); err != nil {
		return ProviderIdentity{}, err
	}
	id := ProviderIdentity{ID: strconv.FormatInt(user.ID, 10), Login: user.Login, Name: user.Name}
	for _, e := range emails {
		if e.Primary && e.Verified {
			id.Email = e.Email
		}
	}
	return id, nil
}

// get decodes the JSON answer of GET {api}{path}.
func (g *gitHub) get(ctx context.Context, hc *http.Client, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.api+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("User-Agent", "wrenn-control-plane")
	res, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("github %s: %w", path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxProviderBody))
	if err != nil {
		return fmt.Errorf("github %s: %w", path, err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("github %s: status %d", path, res.StatusCode)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("github %s: %w", path, err)
	}
	return nil
}
