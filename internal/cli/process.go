package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/spf13/cobra"

	"github.com/wrenn/wrenn/internal/cli/apiclient"
)

// process is an entry of the process list (docs/api.md).
type process struct {
	PID       int        `json:"pid"`
	Tag       string     `json:"tag"`
	Cmd       string     `json:"cmd"`
	Args      []string   `json:"args"`
	Status    string     `json:"status"`
	ExitCode  *int       `json:"exit_code"`
	StartedAt *time.Time `json:"started_at"`
	ExitedAt  *time.Time `json:"exited_at"`
}

func (a *app) psCommand() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "ps [--all] ID",
		Short: "List a capsule's processes (background, exec, terminals)",
		Args:  args(1, 1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			path := capsulePath(argv[0], "processes")
			if all {
				path += "?include_exited=true"
			}
			var res struct {
				Processes []process `json:"processes"`
			}
			raw, err := c.CallInto(cmd.Context(), http.MethodGet, path, apiclient.AuthKey, nil, &res)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(a.stdout, raw)
			}
			t := newTable(a.stdout, "PID", "TAG", "STATUS", "EXIT", "STARTED", "COMMAND")
			for _, p := range res.Processes {
				exit := "-"
				if p.ExitCode != nil {
					exit = strconv.Itoa(*p.ExitCode)
				}
				t.row(strconv.Itoa(p.PID), orDash(p.Tag), p.Status, exit, ago(p.StartedAt), strings.Join(append([]string{p.Cmd}, p.Args...), " "))
			}
			return t.flush()
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "include exited processes (kept at least 10 minutes)")
	return cmd
}

// normalizeSignal accepts SIGTERM, TERM, 15, SIGKILL, KILL, 9 (any case).
func normalizeSignal(s string) (string, error) {
	switch strings.ToUpper(strings.TrimPrefix(strings.ToUpper(s), "SIG")) {
	case "TERM", "15":
		return "SIGTERM", nil
	case "KILL", "9":
		return "SIGKILL", nil
	}
	return "", usagef("--signal %q: want SIGTERM or SIGKILL", s)
}

func (a *app) killCommand() *cobra.Command {
	var signal string
	cmd := &cobra.Command{
		Use:   "kill [--signal SIGTERM|SIGKILL] ID SELECTOR",
		Short: "Signal a capsule's process (SELECTOR: a PID or a tag)",
		Long: `Signal a capsule's process and its process group. SELECTOR is a PID (all digits) or a tag.
The default signal is SIGKILL.`,
		Args: args(2, 2),
		RunE: func(cmd *cobra.Command, argv []string) error {
			sig, err := normalizeSignal(signal)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			path := capsulePath(argv[0], "processes", url.PathEscape(argv[1])) + "?signal=" + sig
			if _, err := c.Call(cmd.Context(), http.MethodDelete, path, apiclient.AuthKey, nil); err != nil {
				return err
			}
			if a.json {
				return printValue(a.stdout, map[string]string{"capsule_id": argv[0], "selector": argv[1], "signal": sig})
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&signal, "signal", "s", "SIGKILL", "SIGTERM or SIGKILL")
	return cmd
}

// logsQuiet is how long `logs` without -f waits for more output of a running process before it
// takes the replay as complete.
const logsQuiet = 500 * time.Millisecond

// logsMax bounds `logs` without -f for a process whose output never pauses.
const logsMax = 10 * time.Second

func (a *app) logsCommand() *cobra.Command {
	var (
		follow bool
		offset int64
	)
	cmd := &cobra.Command{
		Use:   "logs [-f] [--offset N] ID SELECTOR",
		Short: "Print a process's output (SELECTOR: a PID or a tag)",
		Long: `Print the output of a capsule's process (SELECTOR: a PID or a tag): stdout to stdout, stderr to
stderr, as the exact bytes, from byte --offset of the process's output log (at least the last MiB is
kept).

Without -f wrenn prints what the process has written so far: for an exited process everything up
to its exit; for a running one the replay, ending at the first pause of ` + logsQuiet.String() + ` in its output
(at most ` + logsMax.String() + `). With -f it keeps following live output until the process exits.
--json prints the stream's frames, one JSON object a line.`,
		Args: args(2, 2),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if offset < 0 {
				return usagef("--offset must not be negative")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			return a.streamLogs(cmd.Context(), c, argv[0], argv[1], offset, follow)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow live output until the process exits")
	cmd.Flags().Int64Var(&offset, "offset", 0, "byte offset in the output log to start at")
	return cmd
}

func (a *app) streamLogs(ctx context.Context, c *apiclient.Client, id, selector string, offset int64, follow bool) error {
	encoding := "base64"
	if a.json {
		encoding = "text"
	}
	q := url.Values{"offset": {strconv.FormatInt(offset, 10)}, "encoding": {encoding}}
	conn, err := c.Dial(ctx, capsulePath(id, "processes", url.PathEscape(selector), "stream")+"?"+q.Encode(), apiclient.AuthKey)
	if err != nil {
		return err
	}
	defer conn.CloseNow()

	type result struct {
		raw []byte
		fr  frame
		err error
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	frames := make(chan result)
	go func() {
		for {
			_, b, err := conn.Read(rctx)
			var fr frame
			if err == nil {
				err = json.Unmarshal(b, &fr)
			}
			select {
			case frames <- result{raw: b, fr: fr, err: err}:
			case <-rctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	var (
		quiet    <-chan time.Time
		deadline <-chan time.Time
	)
	if !follow {
		deadline = time.After(logsMax)
	}
	for {
		select {
		case r := <-frames:
			if r.err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return closedError(r.err)
			}
			if a.json {
				fmt.Fprintf(a.stdout, "%s\n", r.raw)
			}
			switch r.fr.Type {
			case "stdout", "stderr":
				if !a.json {
					if err := a.writeChunk(r.fr); err != nil {
						return err
					}
				}
			case "exit":
				_ = conn.Close(websocket.StatusNormalClosure, "")
				return nil
			case "error":
				if r.fr.Fatal {
					return &frameError{Code: r.fr.Code, Message: r.fr.Data}
				}
				if !a.json {
					fmt.Fprintln(a.stderr, "wrenn: "+r.fr.Data)
				}
			}
			if !follow {
				quiet = time.After(logsQuiet)
			}
		case <-quiet:
			_ = conn.Close(websocket.StatusNormalClosure, "")
			return nil
		case <-deadline:
			_ = conn.Close(websocket.StatusNormalClosure, "")
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// writeChunk writes one base64 output chunk to stdout or stderr.
func (a *app) writeChunk(fr frame) error {
	b, err := base64.StdEncoding.DecodeString(fr.Data)
	if err != nil {
		return errors.New("undecodable output chunk")
	}
	w := a.stdout
	if fr.Type == "stderr" {
		w = a.stderr
	}
	_, err = w.Write(b)
	return err
}
