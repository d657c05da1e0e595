package cli

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wrenn/wrenn/internal/cli/apiclient"
)

// execOptions are the flags of `capsule exec`.
type execOptions struct {
	background bool
	tag        string
	cwd        string
	env        []string
	timeout    int
}

// execResult is the answer of a foreground exec (docs/api.md).
type execResult struct {
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	ExitCode int    `json:"exit_code"`
	Encoding string `json:"encoding"`
}

// backgroundResult is the answer of a background exec.
type backgroundResult struct {
	PID int    `json:"pid"`
	Tag string `json:"tag"`
}

func (a *app) execCommand() *cobra.Command {
	var o execOptions
	cmd := &cobra.Command{
		Use:   "exec [flags] ID -- CMD [ARGS...]",
		Short: "Run a command in a capsule",
		Long: `Run a command in a capsule. CMD is an executable (looked up in PATH), not a shell line: use
"sh -c '…'" for shell syntax. Put "--" before the command when it has flags of its own.

In the foreground the command's stdout and stderr are written as they are and wrenn exits with its
exit code (137 when it was killed by a signal, 124 when it ran past --timeout, default 30 s).
With --background the command keeps running after wrenn returns; wrenn prints its PID and tag (use
"wrenn ps", "wrenn logs" and "wrenn kill" with either). With --json the API's answer is printed
instead of the output; the exit code still mirrors the command's.`,
		Args: args(2, -1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			req, err := o.request(argv[1:])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			raw, err := c.Call(cmd.Context(), http.MethodPost, capsulePath(argv[0], "exec"), apiclient.AuthKey, req)
			if err != nil {
				var ae *apiclient.APIError
				if errors.As(err, &ae) && ae.Code == "timeout" {
					return &codeError{code: exitTimeout, msg: ae.Error()}
				}
				return err
			}
			if o.background {
				return a.printBackground(raw)
			}
			return a.finishExec(raw)
		},
	}
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		if len(c.Flags().Args()) > 0 { // the bad flag came after the capsule id
			return usagef("%v: put \"--\" between the capsule id and a command with flags of its own", err)
		}
		return &usageError{err}
	})
	f := cmd.Flags()
	f.BoolVarP(&o.background, "background", "b", false, "start the command and return (it keeps running)")
	f.StringVar(&o.tag, "tag", "", "name of the background process (default proc-<8 hex>)")
	f.StringVar(&o.cwd, "cwd", "", "working directory (default: the user's home)")
	f.StringArrayVarP(&o.env, "env", "e", nil, "environment variable K=V (repeatable)")
	f.IntVar(&o.timeout, "timeout", 0, "foreground time limit in seconds (0 = the API's default, 30)")
	return cmd
}

// request builds the exec body from the flags and the command line.
func (o *execOptions) request(command []string) (map[string]any, error) {
	if o.tag != "" && !o.background {
		return nil, usagef("--tag names a background process: use it with --background")
	}
	if o.timeout < 0 {
		return nil, usagef("--timeout must not be negative")
	}
	envs, err := parseEnv(o.env)
	if err != nil {
		return nil, err
	}
	req := map[string]any{"cmd": command[0], "args": command[1:]}
	if len(envs) > 0 {
		req["envs"] = envs
	}
	if o.cwd != "" {
		req["cwd"] = o.cwd
	}
	if o.timeout > 0 {
		req["timeout_sec"] = o.timeout
	}
	if o.background {
		req["background"] = true
		if o.tag != "" {
			req["tag"] = o.tag
		}
	}
	return req, nil
}

// parseEnv turns K=V flags into a map.
func parseEnv(kvs []string) (map[string]string, error) {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("--env %q: want KEY=VALUE", kv)
		}
		out[k] = v
	}
	return out, nil
}

// finishExec writes a foreground result and ends with its exit code.
func (a *app) finishExec(raw []byte) error {
	var res execResult
	if err := decodeAnswer(raw, &res); err != nil {
		return err
	}
	if a.json {
		if err := printJSON(a.stdout, raw); err != nil {
			return err
		}
	} else {
		stdout, stderr := []byte(res.Stdout), []byte(res.Stderr)
		if res.Encoding == "base64" {
			var err error
			if stdout, err = base64.StdEncoding.DecodeString(res.Stdout); err != nil {
				return fmt.Errorf("undecodable stdout: %w", err)
			}
			if stderr, err = base64.StdEncoding.DecodeString(res.Stderr); err != nil {
				return fmt.Errorf("undecodable stderr: %w", err)
			}
		}
		if _, err := a.stdout.Write(stdout); err != nil {
			return err
		}
		if _, err := a.stderr.Write(stderr); err != nil {
			return err
		}
	}
	if code := exitCode(res.ExitCode); code != 0 {
		return &codeError{code: code}
	}
	return nil
}

// exitCode maps a remote exit code to the CLI's: −1 (killed by a signal) → 137.
func exitCode(remote int) int {
	switch {
	case remote < 0:
		return exitSignal
	case remote > 255:
		return remote & 0xff
	}
	return remote
}

func (a *app) printBackground(raw []byte) error {
	if a.json {
		return printJSON(a.stdout, raw)
	}
	var res backgroundResult
	if err := decodeAnswer(raw, &res); err != nil {
		return err
	}
	_, err := fmt.Fprintf(a.stdout, "%d %s\n", res.PID, res.Tag)
	return err
}
