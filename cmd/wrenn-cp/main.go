// Command wrenn-cp is Wrenn's control plane: the REST + WebSocket API over PostgreSQL (serve), the
// first-admin bootstrap for self-hosters (bootstrap) and schema migration (migrate).
package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/wrenn/wrenn/internal/controlplane/daemon"
	"github.com/wrenn/wrenn/internal/controlplane/mail"
)

// release is set at build time (-X main.release=…).
var release = "dev"

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "wrenn-cp:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "wrenn-cp",
		Short:         "Wrenn control plane",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       release,
	}
	var dsn string
	root.PersistentFlags().StringVar(&dsn, "database-url", "", "PostgreSQL DSN (env WRENN_DATABASE_URL or DATABASE_URL)")
	dbURL := func() (string, error) {
		for _, v := range []string{dsn, os.Getenv("WRENN_DATABASE_URL"), os.Getenv("DATABASE_URL")} {
			if v != "" {
				return v, nil
			}
		}
		return "", fmt.Errorf("no database: set --database-url, WRENN_DATABASE_URL or DATABASE_URL")
	}
	root.AddCommand(newServe(dbURL), newBootstrap(dbURL), newMigrate(dbURL))
	return root
}

// envDefault returns the environment variable's value, or def.
func envDefault(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// envList splits a comma-separated environment variable; unset: nil.
func envList(key string) []string {
	v := os.Getenv(key)
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

func newServe(dbURL func() (string, error)) *cobra.Command {
	var (
		c         daemon.Config
		smtpPort  string
		smtpTLS   string
		logFormat string
		logLevel  string
		allowNets []string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the API (migrates the database first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if c.DatabaseURL, err = dbURL(); err != nil {
				return err
			}
			if smtpPort != "" {
				if c.SMTP.Port, err = strconv.Atoi(smtpPort); err != nil {
					return fmt.Errorf("--smtp-port: %w", err)
				}
			}
			if c.SMTP.TLS, err = mail.ParseTLSPolicy(smtpTLS); err != nil {
				return fmt.Errorf("--smtp-tls: %w", err)
			}
			for _, n := range allowNets {
				p, err := netip.ParsePrefix(strings.TrimSpace(n))
				if err != nil {
					return fmt.Errorf("--channels-allowed-nets: %w", err)
				}
				c.ChannelsAllowedNets = append(c.ChannelsAllowedNets, p.Masked())
			}
			if c.Log, err = newLogger(logFormat, logLevel); err != nil {
				return err
			}
			c.Version = release
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return daemon.Run(ctx, c)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.Listen, "listen", envDefault("WRENN_LISTEN", ":8080"), "address of the API (env WRENN_LISTEN)")
	f.StringVar(&c.Secret, "secret", os.Getenv("WRENN_SECRET"), "JWT secret, ≥ 32 characters (env WRENN_SECRET); empty: generated once and kept in the database")
	f.StringVar(&c.DashboardURL, "dashboard-url", envDefault("WRENN_DASHBOARD_URL", "http://localhost:8080"), "base URL of links in mails and of OAuth redirects (env WRENN_DASHBOARD_URL)")
	f.StringVar(&c.PublicURL, "public-url", os.Getenv("WRENN_PUBLIC_URL"), "external base URL of the API; OAuth providers return to <url>/auth/oauth/<provider>/callback (env WRENN_PUBLIC_URL); empty: --dashboard-url")
	f.StringVar(&c.GitHub.ClientID, "github-client-id", os.Getenv("WRENN_GITHUB_CLIENT_ID"), "GitHub OAuth app client id; set with the secret to enable GitHub sign-in (env WRENN_GITHUB_CLIENT_ID)")
	f.StringVar(&c.GitHub.ClientSecret, "github-client-secret", os.Getenv("WRENN_GITHUB_CLIENT_SECRET"), "GitHub OAuth app client secret (env WRENN_GITHUB_CLIENT_SECRET)")
	f.StringVar(&c.GitHub.AuthURL, "github-auth-url", os.Getenv("WRENN_GITHUB_AUTH_URL"), "GitHub authorization URL (env WRENN_GITHUB_AUTH_URL); empty: GitHub's")
	f.StringVar(&c.GitHub.TokenURL, "github-token-url", os.Getenv("WRENN_GITHUB_TOKEN_URL"), "GitHub token URL (env WRENN_GITHUB_TOKEN_URL); empty: GitHub's")
	f.StringVar(&c.GitHub.APIURL, "github-api-url", os.Getenv("WRENN_GITHUB_API_URL"), "GitHub REST API base URL (env WRENN_GITHUB_API_URL); empty: GitHub's")
	f.StringVar(&c.ProxyDomain, "proxy-domain", os.Getenv("WRENN_PROXY_DOMAIN"), "port proxy domain: {port}-{capsule_id}.<domain> reaches a capsule port (env WRENN_PROXY_DOMAIN); empty disables")
	f.StringVar(&c.SMTP.Host, "smtp-host", os.Getenv("WRENN_SMTP_HOST"), "SMTP server; empty: mails are logged, not sent (env WRENN_SMTP_HOST)")
	f.StringVar(&smtpPort, "smtp-port", envDefault("WRENN_SMTP_PORT", "587"), "SMTP port (env WRENN_SMTP_PORT)")
	f.StringVar(&c.SMTP.Username, "smtp-username", os.Getenv("WRENN_SMTP_USERNAME"), "SMTP user (env WRENN_SMTP_USERNAME)")
	f.StringVar(&c.SMTP.Password, "smtp-password", os.Getenv("WRENN_SMTP_PASSWORD"), "SMTP password (env WRENN_SMTP_PASSWORD)")
	f.StringVar(&c.SMTP.From, "smtp-from", envDefault("WRENN_SMTP_FROM", "wrenn@localhost"), "sender address (env WRENN_SMTP_FROM)")
	f.StringVar(&smtpTLS, "smtp-tls", envDefault("WRENN_SMTP_TLS", "mandatory"), "SMTP TLS policy: mandatory (STARTTLS), opportunistic, implicit or none (env WRENN_SMTP_TLS)")
	f.DurationVar(&c.HeartbeatTimeout, "heartbeat-timeout", 0, "a host silent this long becomes unreachable (default 90s)")
	f.DurationVar(&c.MonitorInterval, "monitor-interval", 0, "how often host heartbeats are checked (default 30s)")
	f.DurationVar(&c.ReconcileInterval, "reconcile-interval", 0, "how often capsule state is reconciled with agents (default 10s)")
	f.DurationVar(&c.StatsInterval, "stats-interval", 0, "how often team usage is sampled (default 10s)")
	f.IntVar(&c.BuildWorkers, "build-workers", 0, "template builds this control plane runs at once (default 2); -1: none")
	f.Int32Var(&c.Quota.Capsules, "quota-capsules", 0, "default per-team limit of running capsules; 0 = unlimited (admins override it per team)")
	f.Int32Var(&c.Quota.VCPUs, "quota-vcpus", 0, "default per-team limit of running capsules' vCPUs; 0 = unlimited")
	f.Int32Var(&c.Quota.MemoryMB, "quota-memory-mb", 0, "default per-team limit of running capsules' memory in MB; 0 = unlimited")
	f.Int32Var(&c.Quota.PausedDiskMB, "quota-paused-disk-mb", 0, "default per-team limit of paused capsules' disk in MB; 0 = unlimited")
	f.StringVar(&c.MetricsToken, "metrics-token", os.Getenv("WRENN_METRICS_TOKEN"), "bearer token /metrics requires (env WRENN_METRICS_TOKEN); empty: /metrics is public")
	f.BoolVar(&c.MetricsTeamLabels, "metrics-team-labels", os.Getenv("WRENN_METRICS_TEAM_LABELS") == "true", "add per-team capsule counts to /metrics (env WRENN_METRICS_TEAM_LABELS=true)")
	f.BoolVar(&c.ChannelsAllowPrivate, "channels-allow-private", os.Getenv("WRENN_CHANNELS_ALLOW_PRIVATE") == "true", "let notification channels deliver to loopback, private, link-local and metadata addresses (env WRENN_CHANNELS_ALLOW_PRIVATE=true)")
	f.StringSliceVar(&allowNets, "channels-allowed-nets", envList("WRENN_CHANNELS_ALLOWED_NETS"), "CIDRs notification channels may deliver to although they are internal, comma-separated (env WRENN_CHANNELS_ALLOWED_NETS)")
	// Server limits; hidden: the defaults suit every deployment, tests shorten them.
	f.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", 0, "time a client has to send a request's headers (default 10s)")
	f.DurationVar(&c.IdleTimeout, "idle-timeout", 0, "an idle keep-alive connection is closed after this (default 120s)")
	f.DurationVar(&c.WebSocketRecheck, "ws-recheck-interval", 0, "how often open WebSockets re-check their credential (default 60s)")
	for _, n := range []string{"read-header-timeout", "idle-timeout", "ws-recheck-interval"} {
		_ = f.MarkHidden(n)
	}
	f.StringVar(&logFormat, "log-format", envDefault("WRENN_LOG_FORMAT", "text"), "text or json (env WRENN_LOG_FORMAT)")
	f.StringVar(&logLevel, "log-level", envDefault("WRENN_LOG_LEVEL", "info"), "debug, info, warn or error (env WRENN_LOG_LEVEL)")
	hideDefaults(f, "secret", "smtp-password", "metrics-token", "github-client-secret")
	return cmd
}

// hideDefaults keeps secrets taken from the environment out of --help.
func hideDefaults(f *pflag.FlagSet, names ...string) {
	for _, n := range names {
		if fl := f.Lookup(n); fl != nil {
			fl.DefValue = ""
		}
	}
}

func newBootstrap(dbURL func() (string, error)) *cobra.Command {
	var email, password, name string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Create the first platform admin (with a password), its team and an API key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dsn, err := dbURL()
			if err != nil {
				return err
			}
			if password == "" {
				password = os.Getenv("WRENN_ADMIN_PASSWORD")
			}
			res, err := daemon.Bootstrap(cmd.Context(), dsn, email, password, name)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]string{
					"user_id": res.UserID, "team_id": res.TeamID, "email": email, "api_key": res.APIKey,
				})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "admin user %s (%s)\nteam       %s\napi key    %s\n", res.UserID, email, res.TeamID, res.APIKey)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&email, "email", "", "admin email (required)")
	f.StringVar(&password, "password", "", "admin password, ≥ 8 characters (or env WRENN_ADMIN_PASSWORD)")
	f.StringVar(&name, "name", "Admin", "admin display name")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	_ = cmd.MarkFlagRequired("email")
	return cmd
}

func newMigrate(dbURL func() (string, error)) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Apply pending database migrations and exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dsn, err := dbURL()
			if err != nil {
				return err
			}
			return daemon.Migrate(cmd.Context(), dsn)
		},
	}
}

func newLogger(format, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is neither text nor json", format)
}
