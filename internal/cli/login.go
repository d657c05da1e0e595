package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/wrenn/wrenn/internal/cli/apiclient"
	"github.com/wrenn/wrenn/internal/cli/profile"
)

// EnvPassword is read by `wrenn login` when --password is not given.
const EnvPassword = "WRENN_PASSWORD"

// defaultProfile is the profile `wrenn login` writes when none is named.
const defaultProfile = "default"

func (a *app) loginCommand() *cobra.Command {
	var email, password string
	cmd := &cobra.Command{
		Use:   "login --url U --email E [--password P] [--profile NAME]",
		Short: "Log in to a control plane and save the profile",
		Long: `Log in with email and password: store the user's JWT (6 hours; for accounts and hosts) and an API
key of the team (created on first login; for capsules and templates) in a profile of the
configuration file (mode 0600), and make the profile current.

The password comes from --password, else $` + EnvPassword + `, else a prompt on the terminal. The profile is
--profile, else the current one when it is for the same URL, else "` + defaultProfile + `".`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.login(cmd.Context(), email, password)
		},
	}
	cmd.Flags().StringVar(&email, "email", "", "account email (default: the profile's)")
	cmd.Flags().StringVar(&password, "password", "", "password (env "+EnvPassword+"; prompted on a terminal)")
	return cmd
}

func (a *app) login(ctx context.Context, email, password string) error {
	path, err := profile.Path()
	if err != nil {
		return err
	}
	cfg, err := profile.Load(path)
	if err != nil {
		return err
	}
	base := strings.TrimRight(firstNonEmpty(a.url, os.Getenv(EnvURL)), "/")
	name := firstNonEmpty(a.profile, os.Getenv(EnvProfile))
	if name == "" {
		if cur, ok := cfg.Profiles[cfg.Current]; ok && (base == "" || sameURL(base, cur.URL)) {
			name = cfg.Current
		} else {
			name = defaultProfile
		}
	}
	old := cfg.Profiles[name]
	if base == "" {
		base = strings.TrimRight(old.URL, "/")
	}
	if base == "" {
		return usagef("--url is required (the control plane's API, e.g. http://127.0.0.1:8080)")
	}
	if err := checkURL(base); err != nil {
		return err
	}
	if email == "" && sameURL(base, old.URL) {
		email = old.Email
	}
	if email == "" {
		return usagef("--email is required")
	}
	if password == "" {
		password = os.Getenv(EnvPassword)
	}
	if password == "" {
		if password, err = a.promptPassword(email); err != nil {
			return err
		}
	}

	anon := apiclient.New(base, "", "")
	var auth struct {
		Token  string `json:"token"`
		UserID string `json:"user_id"`
		TeamID string `json:"team_id"`
		Email  string `json:"email"`
	}
	if _, err := anon.CallInto(ctx, http.MethodPost, "/v1/auth/login", apiclient.AuthNone,
		map[string]string{"email": email, "password": password}, &auth); err != nil {
		return err
	}
	user := apiclient.New(base, "", auth.Token)

	// The API key: --api-key, else the profile's when it still works for this account, else a new one.
	key := firstNonEmpty(a.apiKey, os.Getenv(EnvAPIKey))
	if key == "" && old.APIKey != "" && sameURL(old.URL, base) && strings.EqualFold(old.Email, auth.Email) {
		if _, err := apiclient.New(base, old.APIKey, "").Call(ctx, http.MethodGet, "/v1/capsules", apiclient.AuthKey, nil); err == nil {
			key = old.APIKey
		}
	}
	if key == "" {
		hostname, _ := os.Hostname()
		var created struct {
			Key string `json:"key"`
		}
		if _, err := user.CallInto(ctx, http.MethodPost, "/v1/api-keys", apiclient.AuthUser,
			map[string]string{"name": "wrenn CLI (" + firstNonEmpty(hostname, "unknown host") + ")"}, &created); err != nil {
			return fmt.Errorf("create an API key: %w", err)
		}
		key = created.Key
	}

	cfg.Set(name, profile.Profile{URL: base, APIKey: key, Token: auth.Token, Email: auth.Email})
	if err := cfg.Save(path); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if a.json {
		return printValue(a.stdout, map[string]string{
			"profile": name, "url": base, "email": auth.Email, "user_id": auth.UserID, "team_id": auth.TeamID, "config": path,
		})
	}
	_, err = fmt.Fprintf(a.stdout, "Logged in to %s as %s (profile %q in %s)\n", base, auth.Email, name, path)
	return err
}

// promptPassword reads the password from the terminal without echo.
func (a *app) promptPassword(email string) (string, error) {
	f, ok := a.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", usagef("no password: pass --password or set %s", EnvPassword)
	}
	fmt.Fprintf(a.stderr, "Password for %s: ", email)
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(a.stderr)
	if err != nil {
		return "", fmt.Errorf("read the password: %w", err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", errors.New("empty password")
	}
	return pw, nil
}
