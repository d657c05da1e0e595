// Package cli is the `wrenn` command line: a client of the control plane's API (contract
// /work/shared/spec/wrenn-api.md) for capsules, their processes, files and terminals, templates and hosts.
//
// Credentials come from a profile of the CLI configuration (internal/cli/profile, written by `wrenn login`
// and `wrenn up`), overridden by --url/--api-key and WRENN_URL/WRENN_API_KEY. Errors print one line,
// `wrenn: <message>`, and exit 1; usage errors exit 2; `capsule exec` and `capsule shell` exit with the
// remote command's code.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/wrenn/wrenn/internal/cli/apiclient"
	"github.com/wrenn/wrenn/internal/cli/profile"
)

// Environment variables the CLI reads (besides profile.EnvPath).
const (
	EnvURL     = "WRENN_URL"
	EnvAPIKey  = "WRENN_API_KEY"
	EnvToken   = "WRENN_TOKEN"
	EnvProfile = "WRENN_PROFILE"
)

// Exit codes.
const (
	exitError   = 1
	exitUsage   = 2
	exitSignal  = 137 // the remote command was killed by a signal (128 + SIGKILL)
	exitTimeout = 124 // the remote command ran past its time limit (as timeout(1))
)

// app holds the global flags and the streams of one invocation.
type app struct {
	profile string
	url     string
	apiKey  string
	json    bool

	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// runState records whether a command's own code started: errors before that are usage errors.
type runState struct{ started bool }

type stateKey struct{}

// usageError is a mistake on the command line (exit 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return &usageError{fmt.Errorf(format, args...)} }

// codeError ends the command with an exit code, printing msg first when it is not empty.
type codeError struct {
	code int
	msg  string
}

func (e *codeError) Error() string {
	if e.msg == "" {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.msg
}

// interrupted is the cause of the root context when a signal ended the command.
type interrupted struct{ sig syscall.Signal }

func (e *interrupted) Error() string { return "interrupted by " + e.sig.String() }

// NewRoot returns the `wrenn` command with every subcommand of the CLI (`up` is added by cmd/wrenn).
func NewRoot() *cobra.Command {
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	root := &cobra.Command{
		Use:   "wrenn",
		Short: "Wrenn: sandboxed capsules on your own machines",
		Long: `wrenn drives a Wrenn control plane: capsules (create, exec, shell, files, pause/resume), their
background processes, snapshot templates and hosts.

Credentials come from a profile of the configuration file ($WRENN_CONFIG, else
~/.config/wrenn/config.json) written by "wrenn login" or "wrenn up"; --url and --api-key (or
WRENN_URL, WRENN_API_KEY, WRENN_TOKEN) override them. --json prints the API's JSON instead of tables.

Exit codes: 0 success, 1 error (one line "wrenn: <message>" on stderr), 2 usage error;
"capsule exec" and "capsule shell" exit with the remote command's code (137 when it was killed by a
signal, 124 when it ran past --timeout).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if st, ok := cmd.Context().Value(stateKey{}).(*runState); ok {
				st.started = true
			}
			a.stdout, a.stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
			a.stdin = cmd.InOrStdin()
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.profile, "profile", "", "configuration profile to use (env "+EnvProfile+"; default: the current one)")
	pf.BoolVar(&a.json, "json", false, "print the API's JSON instead of tables and plain text")
	pf.StringVar(&a.url, "url", "", "control-plane API URL (env "+EnvURL+"; default: the profile's)")
	pf.StringVar(&a.apiKey, "api-key", "", "API key wrn_… (env "+EnvAPIKey+"; default: the profile's)")

	root.AddCommand(
		a.loginCommand(),
		a.capsuleCommand(),
		a.psCommand(),
		a.killCommand(),
		a.logsCommand(),
		a.filesCommand(),
		a.snapshotCommand(),
		a.templateCommand(),
		a.hostCommand(),
	)
	return root
}

// Execute runs root and returns the process exit code. SIGINT, SIGTERM and SIGHUP cancel the
// command's context (a second one has its default effect).
func Execute(root *cobra.Command) int {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			signal.Stop(sigs)
			sig, _ := s.(syscall.Signal)
			cancel(&interrupted{sig: sig})
		case <-ctx.Done():
		}
	}()
	st := &runState{}
	cmd, err := root.ExecuteContextC(context.WithValue(ctx, stateKey{}, st))
	if err == nil {
		return 0
	}
	stderr := root.ErrOrStderr()
	var ce *codeError
	if errors.As(err, &ce) {
		if ce.msg != "" {
			fmt.Fprintln(stderr, "wrenn: "+oneLine(ce.msg))
		}
		return ce.code
	}
	var in *interrupted
	if errors.As(err, &in) || errors.As(context.Cause(ctx), &in) {
		return 128 + int(in.sig)
	}
	var ue *usageError
	if errors.As(err, &ue) || !st.started {
		path := root.Name()
		if cmd != nil {
			path = cmd.CommandPath()
		}
		fmt.Fprintf(stderr, "wrenn: %s (see '%s --help')\n", oneLine(err.Error()), path)
		return exitUsage
	}
	fmt.Fprintln(stderr, "wrenn: "+oneLine(err.Error()))
	return exitError
}

// oneLine folds a message onto one line (cobra's suggestions span several).
func oneLine(s string) string {
	s = strings.Replace(s, "\n\nDid you mean this?\n", "; did you mean: ", 1)
	return strings.Join(strings.Fields(s), " ")
}

// group is a command that only holds subcommands.
func group(use, short string, aliases []string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:     use,
		Aliases: aliases,
		Short:   short,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	c.AddCommand(subs...)
	return c
}

// args checks the number of positional arguments as a usage error.
func args(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		switch {
		case len(a) < min:
			return usagef("missing arguments: %s", cmd.UseLine())
		case max >= 0 && len(a) > max:
			return usagef("too many arguments: %s", cmd.UseLine())
		}
		return nil
	}
}

// client builds the API client: URL and credentials from the flags, else the environment, else the
// profile. A profile's credentials are used only with the profile's own URL.
func (a *app) client() (*apiclient.Client, error) {
	base := firstNonEmpty(a.url, os.Getenv(EnvURL))
	key := firstNonEmpty(a.apiKey, os.Getenv(EnvAPIKey))
	token := os.Getenv(EnvToken)

	name := firstNonEmpty(a.profile, os.Getenv(EnvProfile))
	path, err := profile.Path()
	if err != nil {
		return nil, err
	}
	cfg, err := profile.Load(path)
	if err != nil {
		return nil, err
	}
	p, _, perr := cfg.Profile(name)
	switch {
	case perr != nil && (name != "" || base == ""):
		return nil, perr
	case perr == nil && (base == "" || sameURL(base, p.URL)):
		base = p.URL
		key = firstNonEmpty(key, p.APIKey)
		token = firstNonEmpty(token, p.Token)
	}
	if err := checkURL(base); err != nil {
		return nil, err
	}
	return apiclient.New(base, key, token), nil
}

// checkURL accepts http(s)://host[:port][/prefix].
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &usageError{fmt.Errorf("invalid control-plane URL %q: want http(s)://host[:port]", s)}
	}
	return nil
}

func sameURL(a, b string) bool { return strings.TrimRight(a, "/") == strings.TrimRight(b, "/") }

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
