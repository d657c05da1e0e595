// Package up runs a single-node Wrenn platform on this machine (`wrenn up`): OS packages and runsc,
// the base image, PostgreSQL, the control plane and one registered host agent, stopped in order on
// Ctrl-C and resumed with all data by the next run.
package up

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/internal/cli/profile"
)

// Defaults of the flags and of what the first run picks.
const (
	DefaultDataDir    = "/var/lib/wrenn"
	DefaultListen     = "127.0.0.1:8080"
	DefaultAdminEmail = "admin@localhost"
	// DefaultProxyDomain makes the port proxy answer http://{port}-{capsule_id}.localhost:<port>/ on
	// this machine: *.localhost resolves to loopback in browsers and curl.
	DefaultProxyDomain = "localhost"
	// DefaultPool keeps two base capsules warm on every host: the first run sets it in the control
	// plane (docs/agent.md, "Warm pools").
	DefaultPool = "base=2"
	// ProfileName is the CLI profile `wrenn up` writes and makes current.
	ProfileName = "local"

	defaultAgentPort = 9900
	defaultNetPrefix = "wrn"
	defaultSubnet    = "10.11.0.0/16"
	baseImage        = "base"
)

// How long each component gets to stop before it is killed. The agent pauses every running capsule
// first (-on-shutdown=pause).
const (
	agentStopTimeout = 3 * time.Minute
	cpStopTimeout    = 20 * time.Second
	// An image build stops its commands at once; removing the half-built tree takes a moment.
	imageStopTimeout = 30 * time.Second
)

// exitImageNotBuilt is the exit status of `wrenn-agent prepare-images -check` when the image is missing.
const exitImageNotBuilt = 3

// Options configure `wrenn up`.
type Options struct {
	DataDir     string // everything: agent data, private PostgreSQL, logs, up.json
	Listen      string // control-plane API address
	DatabaseURL string // external PostgreSQL; empty = private cluster under DataDir/postgres
	AdminEmail  string // the admin created on the first run
	// NetPrefix and Subnet are the agent's network prefix and capsule address pool; empty = what the
	// first run recorded, else the agent's defaults.
	NetPrefix string
	Subnet    string
	// ProxyDomain is the port proxy's domain: http://{port}-{capsule_id}.<domain>:<port of Listen>/
	// reaches a capsule's port (default "localhost", which browsers and curl resolve to loopback);
	// empty turns the proxy off.
	ProxyDomain    string
	SkipDeps       bool // do not install missing OS packages
	NoBaseTemplate bool // do not build the base image (tests)
	// Pool is warm pool sizes per template, name=size[,...] (docs/agent.md, "Warm pools"), set in the
	// control plane (PUT /v1/admin/templates/{name}/pool) on the first run of a data directory, and on
	// any run with SetPool; other runs keep what the admin set. Empty: none. Not used with
	// NoBaseTemplate (a pool of base would build the image).
	Pool string
	// SetPool sets Pool on this run too (--pool given explicitly).
	SetPool bool
	Out     io.Writer
}

// NewCommand returns the `wrenn up` command.
func NewCommand() *cobra.Command {
	var o Options
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a single-node platform on this machine (as root) and print its login",
		Long: `Run a whole Wrenn platform on this machine: install missing OS packages and runsc, build the base
template image, start PostgreSQL (DATABASE_URL, or a private cluster under the data directory), the
control plane and a host agent registered to it; print the API URL, the admin login and an API key,
and write the CLI profile "local". Ctrl-C stops the agent (pausing running capsules), the control plane
and PostgreSQL; the next run resumes the capsules and keeps all data. Needs root.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Out = cmd.OutOrStdout()
			o.SetPool = cmd.Flags().Changed("pool")
			if o.DatabaseURL == "" {
				o.DatabaseURL = firstEnv("WRENN_DATABASE_URL", "DATABASE_URL")
			}
			return Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DataDir, "data-dir", DefaultDataDir, "where capsules, images, the private PostgreSQL cluster, logs and the generated login live")
	f.StringVar(&o.Listen, "listen", DefaultListen, "address of the control plane's API")
	f.StringVar(&o.DatabaseURL, "database-url", "", "PostgreSQL DSN (env WRENN_DATABASE_URL or DATABASE_URL); empty: a private cluster under <data-dir>/postgres")
	f.StringVar(&o.AdminEmail, "admin-email", DefaultAdminEmail, "email of the admin the first run creates")
	f.StringVar(&o.NetPrefix, "net-prefix", "", "the agent's -net-prefix (default: the first run's, else "+defaultNetPrefix+")")
	f.StringVar(&o.Subnet, "subnet", "", "the agent's -subnet (default: the first run's, else "+defaultSubnet+")")
	f.StringVar(&o.ProxyDomain, "proxy-domain", DefaultProxyDomain, "port proxy domain: http://{port}-{capsule_id}.<domain>:<listen port>/ reaches a capsule's port; empty turns the proxy off")
	f.BoolVar(&o.SkipDeps, "skip-deps", false, "do not install missing OS packages")
	f.BoolVar(&o.NoBaseTemplate, "no-base-template", false, "do not build the base template image (tests; a capsule from base builds it)")
	f.StringVar(&o.Pool, "pool", DefaultPool, "warm pool sizes, template=size[,...]: capsules kept booted on every host so creates of the default shape answer at once; set in the control plane on the first run (later runs keep what the admin set unless --pool is given); empty: none")
	return cmd
}

func firstEnv(keys ...string) string {
	for _, k := range keys {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return ""
}

// Run sets the platform up, prints its login and "Ready.", and runs it until ctx ends or SIGINT or
// SIGTERM arrives; then it stops the agent, the control plane and PostgreSQL, in that order. A second
// signal kills what is still stopping.
func Run(ctx context.Context, o Options) error {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if _, err := parsePools(o.Pool); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("wrenn up runs the host agent, which needs root: run it as root")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)

	u := &upper{o: o, out: o.Out, force: make(chan struct{})}
	var (
		wg       sync.WaitGroup
		finished = make(chan struct{})
	)
	defer wg.Wait()
	defer close(finished)
	wg.Go(func() {
		select {
		case <-sigc:
			cancel()
		case <-finished:
			return
		}
		select {
		case <-sigc:
			fmt.Fprintln(u.out, "Second signal: killing what is still stopping.")
			close(u.force)
		case <-finished:
		}
	})

	err := u.run(ctx)
	u.shutdown()
	if err != nil && ctx.Err() != nil {
		// A signal, or the caller's context: a requested stop.
		if !u.ready {
			return errors.New("interrupted before the platform was ready")
		}
		return nil
	}
	return err
}

// upper is one `wrenn up` run.
type upper struct {
	o      Options
	out    io.Writer
	dir    string // absolute data directory
	logs   string
	state  *state
	bins   binaries
	runsc  string
	apiURL string

	lock       *os.File
	imageBuild *child   // `wrenn-agent prepare-images` building the base image; nil when none runs
	closers    []closer // stopped in reverse order
	cp         *child
	agent      *child
	force      chan struct{} // closed on a second signal
	ready      bool
}

type closer struct {
	what string
	stop func() error
}

func (u *upper) status(label, format string, args ...any) {
	fmt.Fprintf(u.out, "%-14s %s\n", label, fmt.Sprintf(format, args...))
}

func (u *upper) run(ctx context.Context) error {
	start := time.Now()
	if err := u.prepareDir(); err != nil {
		return err
	}
	var err error
	if u.bins, err = findBinaries(); err != nil {
		return err
	}
	st, existed, err := loadState(u.dir)
	if err != nil {
		return err
	}
	u.state = st
	if err := u.checkDatabase(); err != nil {
		return err
	}
	if !existed {
		fmt.Fprintf(u.out, "wrenn up: first run in %s: installing packages and building runsc and the base image can take minutes; later runs take seconds.\n", u.dir)
	} else {
		fmt.Fprintf(u.out, "wrenn up: data in %s, logs in %s\n", u.dir, u.logs)
	}
	if err := u.deps(ctx); err != nil {
		return err
	}
	if err := u.startBaseImage(ctx); err != nil {
		return err
	}
	dsn, err := u.database(ctx)
	if err != nil {
		return err
	}
	if err := u.startControlPlane(ctx, dsn); err != nil {
		return err
	}
	api := newAPI(u.apiURL)
	jwt, err := u.admin(ctx, api, dsn)
	if err != nil {
		return err
	}
	if err := u.setPools(ctx, api, jwt); err != nil {
		return err
	}
	if err := u.startAgent(ctx, api, jwt); err != nil {
		return err
	}
	if err := u.waitBaseImage(ctx); err != nil {
		return err
	}
	// A fresh JWT: the first one may be minutes old after a base image build.
	if jwt, err = api.login(ctx, st.AdminEmail, st.AdminPassword); err != nil {
		return fmt.Errorf("log in as %s: %w", st.AdminEmail, err)
	}
	path, err := writeProfile(profile.Profile{URL: u.apiURL, APIKey: st.APIKey, Token: jwt, Email: st.AdminEmail})
	if err != nil {
		return fmt.Errorf("write the CLI profile: %w", err)
	}
	u.status("CLI profile", "%q in %s", ProfileName, path)
	u.status("started in", "%s", time.Since(start).Round(100*time.Millisecond))
	fmt.Fprintf(u.out, "%-10s %s\n", "API", u.apiURL)
	fmt.Fprintf(u.out, "%-10s %s / %s\n", "Admin", st.AdminEmail, st.AdminPassword)
	fmt.Fprintf(u.out, "%-10s %s\n", "API key", st.APIKey)
	fmt.Fprintln(u.out, "Ready.")
	u.ready = true

	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-u.cp.done:
		return u.cp.exitError()
	case <-u.agent.done:
		return u.agent.exitError()
	}
}

// prepareDir creates the data and log directories and takes the data directory's lock: one `wrenn
// up` per data directory.
func (u *upper) prepareDir() error {
	dir, err := filepath.Abs(u.o.DataDir)
	if err != nil {
		return err
	}
	u.dir, u.logs = dir, filepath.Join(dir, "logs")
	if err := os.MkdirAll(u.logs, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, "up.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("another wrenn up runs with the data directory %s", dir)
		}
		return fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	u.lock = f
	return nil
}

// deps installs missing OS packages (unless --skip-deps) and finds or builds runsc.
func (u *upper) deps(ctx context.Context) error {
	logPath := filepath.Join(u.logs, "deps.log")
	logf, err := openLog(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n=== %s: wrenn up ===\n", time.Now().UTC().Format(time.RFC3339))
	if !u.o.SkipDeps {
		t := time.Now()
		if err := installDeps(ctx, u.bins, logf); err != nil {
			return fmt.Errorf("%w; end of %s:\n%s", err, logPath, logTail(logPath, 20))
		}
		u.status("OS packages", "ok (%s)", time.Since(t).Round(100*time.Millisecond))
	}
	t := time.Now()
	if u.runsc, err = runscPath(ctx, u.bins, logf); err != nil {
		return fmt.Errorf("%w; end of %s:\n%s", err, logPath, logTail(logPath, 20))
	}
	u.status("runsc", "%s (%s)", u.runsc, time.Since(t).Round(100*time.Millisecond))
	return nil
}

// startBaseImage makes sure the base template image is built: a cached image is found at once, else
// the build (minutes, the first run only) runs while the rest starts, as `wrenn-agent prepare-images`
// (the agent's image code, in a child process whose output goes to logs/base-image.log).
func (u *upper) startBaseImage(ctx context.Context) error {
	if u.o.NoBaseTemplate {
		return nil
	}
	logPath := filepath.Join(u.logs, "base-image.log")
	// The agent builds images in the same store (same directory, same recipes): whichever starts first
	// builds, the other waits for it.
	args := []string{"prepare-images", "-data-dir", u.dir, "-name", baseImage}
	cached, err := u.imageCached(ctx, args, logPath)
	if err != nil {
		return fmt.Errorf("base image: %w; end of %s:\n%s", err, logPath, logTail(logPath, 20))
	}
	if cached {
		u.status("base image", "cached")
		return nil
	}
	if u.imageBuild, err = startChild("base image build", u.bins.agent, args, childEnv(), logPath); err != nil {
		return err
	}
	u.status("base image", "building in the background (first run only, a few minutes; log %s)", logPath)
	return nil
}

// imageCached runs `wrenn-agent prepare-images -check`: whether the image is built, without building it.
func (u *upper) imageCached(ctx context.Context, args []string, logPath string) (bool, error) {
	logf, err := openLog(logPath)
	if err != nil {
		return false, err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, u.bins.agent, append(args, "-check")...)
	cmd.Env = childEnv()
	cmd.Stderr = logf
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee) && ee.ExitCode() == exitImageNotBuilt:
		return false, nil
	}
	return false, fmt.Errorf("wrenn-agent prepare-images -check: %w", err)
}

// waitBaseImage waits for the base image build. A failed build does not stop the platform (capsules
// from other templates work, and one from base retries the build): it is reported.
func (u *upper) waitBaseImage(ctx context.Context) error {
	b := u.imageBuild
	if b == nil {
		return nil
	}
	t := time.Now()
	u.status("base image", "waiting for the build to finish…")
	select {
	case <-b.done:
		if b.err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			why := b.err.Error()
			if l := b.lastLine(); l != "" {
				why = l
			}
			u.status("base image", "BUILD FAILED: %s (log %s; a capsule from base retries the build)", why, b.logPath)
			return nil
		}
		u.status("base image", "built (waited %s)", time.Since(t).Round(time.Second))
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-u.cp.done:
		return u.cp.exitError()
	case <-u.agent.done:
		return u.agent.exitError()
	}
}

// checkDatabase refuses a database other than the one the data directory was set up with: the
// admin, the host and the agent's credentials live there.
func (u *upper) checkDatabase() error {
	st := u.state
	if !st.Bootstrapped || st.Database == u.o.DatabaseURL {
		return nil
	}
	if st.Database == "" {
		return fmt.Errorf("%s was set up with its private PostgreSQL cluster: run without --database-url/DATABASE_URL (or use another --data-dir)", u.dir)
	}
	return fmt.Errorf("%s was set up with another database (%s): pass the same --database-url (or use another --data-dir)", u.dir, redactDSN(st.Database))
}

// database returns the DSN to use: the external one, or the private cluster's (initialized on the
// first run, started now, stopped last).
func (u *upper) database(ctx context.Context) (string, error) {
	st := u.state
	st.Database = u.o.DatabaseURL
	if u.o.DatabaseURL != "" {
		u.status("PostgreSQL", "%s", redactDSN(u.o.DatabaseURL))
		return u.o.DatabaseURL, nil
	}
	if st.PostgresPort == 0 {
		port, err := freeLoopbackPort()
		if err != nil {
			return "", err
		}
		st.PostgresPort = port
	}
	if st.PostgresPassword == "" {
		st.PostgresPassword = randomHex(16)
	}
	if err := st.save(u.dir); err != nil {
		return "", err
	}
	c, err := newCluster(u.dir, filepath.Join(u.logs, "postgres.log"), st)
	if err != nil {
		return "", err
	}
	t := time.Now()
	if !c.Initialized() {
		u.status("PostgreSQL", "creating a private cluster in %s", c.Dir)
		if err := c.Init(ctx); err != nil {
			return "", err
		}
	}
	if !c.Running(ctx) {
		if err := c.Start(ctx); err != nil {
			return "", err
		}
	}
	u.closers = append(u.closers, closer{"PostgreSQL", c.stop})
	if err := c.EnsureDatabase(ctx, databaseName); err != nil {
		return "", err
	}
	u.status("PostgreSQL", "private cluster on 127.0.0.1:%d (%s)", c.Port, time.Since(t).Round(100*time.Millisecond))
	return c.DSN(), nil
}

// startControlPlane runs wrenn-cp serve and waits until it answers /health.
func (u *upper) startControlPlane(ctx context.Context, dsn string) error {
	apiURL, err := localURL(u.o.Listen)
	if err != nil {
		return err
	}
	u.apiURL = apiURL
	t := time.Now()
	// The DSN (with its password) goes through the environment, not the command line.
	// The proxy domain goes through the environment too: an empty one turns the proxy off.
	c, err := startChild("wrenn-cp", u.bins.cp, []string{"serve", "--listen", u.o.Listen},
		childEnv("WRENN_DATABASE_URL="+dsn, "WRENN_PROXY_DOMAIN="+u.o.ProxyDomain), filepath.Join(u.logs, "wrenn-cp.log"))
	if err != nil {
		return err
	}
	u.cp = c
	u.closers = append(u.closers, closer{"control plane", func() error { return c.stop(cpStopTimeout, u.force) }})
	api := newAPI(apiURL)
	if err := waitFor(ctx, time.Minute, c, func() (bool, error) { return api.healthy(ctx), nil }); err != nil {
		return fmt.Errorf("control plane at %s: %w", apiURL, err)
	}
	u.status("control plane", "%s (%s)", apiURL, time.Since(t).Round(100*time.Millisecond))
	if d := u.o.ProxyDomain; d != "" {
		_, port, _ := net.SplitHostPort(u.o.Listen)
		u.status("port proxy", "http://{port}-{capsule_id}.%s:%s/ reaches a port of a capsule", d, port)
	}
	return nil
}

// admin bootstraps the admin on the first run (password generated, kept in up.json), makes sure the
// stored API key still works, and returns a JWT of the admin.
func (u *upper) admin(ctx context.Context, api *api, dsn string) (string, error) {
	st := u.state
	if st.AdminEmail == "" {
		st.AdminEmail = strings.ToLower(strings.TrimSpace(u.o.AdminEmail))
	}
	if st.AdminPassword == "" {
		st.AdminPassword = randomHex(12)
	}
	// Saved before the admin exists: a run interrupted after the bootstrap still knows the password.
	if err := st.save(u.dir); err != nil {
		return "", err
	}
	if !st.Bootstrapped {
		key, err := u.bootstrap(ctx, dsn)
		if err != nil {
			// An earlier run may have bootstrapped and died before recording it.
			if _, lerr := api.login(ctx, st.AdminEmail, st.AdminPassword); lerr != nil {
				return "", err
			}
		}
		st.APIKey, st.Bootstrapped = key, true
		if err := st.save(u.dir); err != nil {
			return "", err
		}
		u.status("admin", "created %s", st.AdminEmail)
	}
	jwt, err := api.login(ctx, st.AdminEmail, st.AdminPassword)
	if err != nil {
		return "", fmt.Errorf("log in as %s with the password in %s: %w", st.AdminEmail, filepath.Join(u.dir, stateFile), err)
	}
	ok := false
	if st.APIKey != "" {
		if ok, err = api.keyWorks(ctx, st.APIKey); err != nil {
			return "", fmt.Errorf("check the API key: %w", err)
		}
	}
	if !ok {
		why := "created"
		if st.APIKey != "" {
			why = "the stored one is no longer accepted: created a new one"
		}
		if st.APIKey, err = api.createAPIKey(ctx, jwt, "wrenn up"); err != nil {
			return "", fmt.Errorf("create an API key: %w", err)
		}
		if err := st.save(u.dir); err != nil {
			return "", err
		}
		u.status("API key", "%s", why)
	}
	return jwt, nil
}

// poolSize is one template=size of --pool.
type poolSize struct {
	template string
	size     int
}

// parsePools parses --pool: comma-separated template=size, size 0..64.
func parsePools(v string) ([]poolSize, error) {
	var out []poolSize
	for f := range strings.SplitSeq(v, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		name, n, ok := strings.Cut(f, "=")
		size, err := strconv.Atoi(n)
		if !ok || name == "" || err != nil || size < 0 || size > 64 {
			return nil, fmt.Errorf("--pool: %q: want template=size with size 0..64", f)
		}
		out = append(out, poolSize{name, size})
	}
	return out, nil
}

// setPools sets --pool's warm pool sizes in the control plane (before the agent starts, so its first
// heartbeat's answer carries them): on the first run of the data directory (and the first run of this
// version on an older one, where the agent's -pool flag kept them), or when --pool was given. Other
// runs keep what the admin set.
func (u *upper) setPools(ctx context.Context, api *api, jwt string) error {
	st := u.state
	if u.o.NoBaseTemplate || (st.PoolsSet && !u.o.SetPool) {
		return nil
	}
	pools, err := parsePools(u.o.Pool)
	if err != nil {
		return err
	}
	var set []string
	for _, p := range pools {
		if err := api.setPool(ctx, jwt, p.template, p.size); err != nil {
			return fmt.Errorf("set the warm pool of %s: %w", p.template, err)
		}
		set = append(set, fmt.Sprintf("%s=%d", p.template, p.size))
	}
	st.PoolsSet = true
	if err := st.save(u.dir); err != nil {
		return err
	}
	if len(set) > 0 {
		u.status("warm pools", "%s per host (PUT /v1/admin/templates/{name}/pool changes them)", strings.Join(set, ","))
	}
	return nil
}

// bootstrap runs `wrenn-cp bootstrap` and returns the API key it created.
func (u *upper) bootstrap(ctx context.Context, dsn string) (string, error) {
	cmd := exec.CommandContext(ctx, u.bins.cp, "bootstrap", "--json", "--email", u.state.AdminEmail, "--name", "Admin")
	cmd.Env = childEnv("WRENN_DATABASE_URL="+dsn, "WRENN_ADMIN_PASSWORD="+u.state.AdminPassword)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("wrenn-cp bootstrap: %s", strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("wrenn-cp bootstrap: %w", err)
	}
	var res struct {
		APIKey string `json:"api_key"`
	}
	if err := json.Unmarshal(out, &res); err != nil || res.APIKey == "" {
		return "", fmt.Errorf("wrenn-cp bootstrap: unexpected output %q", out)
	}
	return res.APIKey, nil
}

// startAgent starts the host agent: registered with a new host's token on the first run, with its
// stored credentials later. It waits until the control plane has a heartbeat from this agent process.
func (u *upper) startAgent(ctx context.Context, api *api, jwt string) error {
	st := u.state
	for _, v := range []struct {
		flag       string
		into       *string
		defaultVal string
	}{{u.o.NetPrefix, &st.NetPrefix, defaultNetPrefix}, {u.o.Subnet, &st.Subnet, defaultSubnet}} {
		switch {
		case v.flag != "":
			*v.into = v.flag
		case *v.into == "":
			*v.into = v.defaultVal
		}
	}
	creds, registered, err := loadAgentCredentials(u.dir)
	if err != nil {
		return err
	}
	var token string
	if registered {
		st.HostID, st.AgentAddress = creds.HostID, creds.Address
	} else {
		if st.AgentAddress == "" {
			if st.AgentAddress, err = agentAddress(); err != nil {
				return err
			}
		}
		if st.HostID, token, err = api.createHost(ctx, jwt); err != nil {
			return fmt.Errorf("create the host: %w", err)
		}
	}
	if err := st.save(u.dir); err != nil {
		return err
	}
	args := []string{
		"-listen", st.AgentAddress, "-control-plane", u.apiURL, "-data-dir", u.dir,
		"-runsc", u.runsc, "-envd", u.bins.envd, "-net-prefix", st.NetPrefix, "-subnet", st.Subnet,
		"-on-shutdown", "pause",
	}
	env := []string{}
	if token != "" {
		env = append(env, "WRENN_REGISTRATION_TOKEN="+token) // not on the command line
	}
	t := time.Now()
	c, err := startChild("wrenn-agent", u.bins.agent, args, childEnv(env...), filepath.Join(u.logs, "wrenn-agent.log"))
	if err != nil {
		return err
	}
	u.agent = c
	u.closers = append(u.closers, closer{"host agent", func() error { return c.stop(agentStopTimeout, u.force) }})
	// The heartbeat times are the control plane's clock, which is this machine's; a second of slack
	// covers their truncation.
	since := t.Add(-time.Second)
	err = waitFor(ctx, 3*time.Minute, c, func() (bool, error) {
		h, err := api.host(ctx, jwt, st.HostID)
		if err != nil {
			return false, nil // retried until the deadline
		}
		return h.Status == "online" && h.LastHeartbeatAt.After(since), nil
	})
	if err != nil {
		return fmt.Errorf("host agent: %w", err)
	}
	u.status("host agent", "%s online at %s (%s)", st.HostID, st.AgentAddress, time.Since(t).Round(100*time.Millisecond))
	return nil
}

// shutdown stops what run started, in reverse: the agent (pausing running capsules), the control
// plane, PostgreSQL; then releases the base image build and the lock.
func (u *upper) shutdown() {
	if len(u.closers) > 0 {
		fmt.Fprintln(u.out, "Stopping…")
	}
	for i := len(u.closers) - 1; i >= 0; i-- {
		c := u.closers[i]
		t := time.Now()
		if err := c.stop(); err != nil {
			u.status(c.what, "stop: %v", err)
			continue
		}
		u.status(c.what, "stopped (%s)", time.Since(t).Round(100*time.Millisecond))
	}
	if b := u.imageBuild; b != nil && !b.exited() {
		// A build in progress is cancelled; the next run starts it again.
		if err := b.stop(imageStopTimeout, u.force); err != nil {
			u.status("base image", "stop: %v", err)
		}
	}
	// Every process of the platform has exited before `wrenn up` returns: sandboxes the agent paused
	// and the PostgreSQL server may take a moment after their parent returned.
	if left := u.waitPlatformExit(); len(left) > 0 {
		for pid, cmd := range left {
			u.status("processes", "still running after the stop: %d %s", pid, cmd)
		}
	}
	if u.lock != nil {
		u.lock.Close()
	}
	if len(u.closers) > 0 {
		fmt.Fprintln(u.out, "Stopped.")
	}
}

// waitPlatformExit waits until no process names the data directory (the agent's runsc sandboxes, the
// postmaster, an image build), up to exitWait, and returns those still running.
func (u *upper) waitPlatformExit() map[int]string {
	if u.dir == "" || len(u.closers) == 0 {
		return nil // started nothing (another run may hold the directory)
	}
	deadline := time.Now().Add(exitWait)
	for {
		left := processesNaming(u.dir)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitFor polls cond every 100 ms until it holds, c exits, ctx ends or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, c *child, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s; end of %s:\n%s", timeout, c.logPath, c.logTail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return c.exitError()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// childEnv is this process's environment without the variables `wrenn up` sets for its children,
// plus extra.
func childEnv(extra ...string) []string {
	drop := map[string]bool{
		"WRENN_DATABASE_URL": true, "DATABASE_URL": true, "WRENN_LISTEN": true, "WRENN_ADMIN_PASSWORD": true,
		"WRENN_CONTROL_PLANE": true, "WRENN_REGISTRATION_TOKEN": true, "WRENN_PROXY_DOMAIN": true,
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// localURL is the URL this machine reaches an API listening on listen at.
func localURL(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("--listen %q: %w", listen, err)
	}
	if _, err := strconv.Atoi(port); err != nil || port == "0" {
		return "", fmt.Errorf("--listen %q: needs a port number", listen)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// agentAddress picks the agent's loopback address on the first run: port 9900 when free, else any
// free port. It is kept afterwards (the agent's certificate is issued for it).
func agentAddress() (string, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(defaultAgentPort))
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		return addr, nil
	}
	port, err := freeLoopbackPort()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// redactDSN hides a DSN's password for printing.
func redactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	return "(DSN)"
}

// writeProfile stores p as the current CLI profile "local" and returns the file's path.
func writeProfile(p profile.Profile) (string, error) {
	path, err := profile.Path()
	if err != nil {
		return "", err
	}
	cfg, err := profile.Load(path)
	if err != nil {
		return "", err
	}
	cfg.Set(ProfileName, p)
	return path, cfg.Save(path)
}
