package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/wrenn/wrenn/internal/cli/apiclient"
)

// defaultShell starts bash when the capsule has it, else sh (busybox images have no bash).
const defaultShell = "if command -v bash >/dev/null 2>&1; then exec bash -l; fi; exec sh -l"

// killWait is how long an interrupted session waits for the PTY to report its exit after a kill.
const killWait = 3 * time.Second

func (a *app) shellCommand() *cobra.Command {
	var cmdLine, tag string
	cmd := &cobra.Command{
		Use:   "shell [--cmd C] [--tag T] ID",
		Short: "Open an interactive terminal in a capsule",
		Long: `Open an interactive terminal in a capsule over the PTY WebSocket. The local terminal is put in
raw mode (restored on exit), resizes follow the window, and wrenn exits with the remote shell's exit code.

--cmd is the program to run (default: bash when the capsule has it, else sh); a value with spaces
is run by /bin/sh -c. The remote terminal lives on when the connection drops: with --tag T, a later
"wrenn capsule shell --tag T ID" reattaches to it (with its recent output) instead of starting a new
one. Without --tag, interrupting wrenn (SIGINT, SIGTERM, SIGHUP) kills the remote program.
stdin need not be a terminal: piped input is sent as typed, and end of input sends Ctrl-D.`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			s := &shellSession{a: a, c: c, id: argv[0], cmdLine: cmdLine, tag: tag}
			code, err := s.run(cmd.Context())
			if err != nil {
				return err
			}
			if code != 0 {
				return &codeError{code: code}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cmdLine, "cmd", "", "program to run (default: bash, else sh)")
	cmd.Flags().StringVar(&tag, "tag", "", "name of the terminal: reattach to it when it is still running")
	return cmd
}

// shellSession is one `capsule shell`.
type shellSession struct {
	a       *app
	c       *apiclient.Client
	id      string
	cmdLine string
	tag     string // --tag

	conn    *websocket.Conn
	ptyTag  string // the terminal's tag (given or generated)
	fd      int    // the local terminal (stdin), when tty
	tty     bool   // stdin is a terminal
	raw     bool   // the terminal is in raw mode
	readErr error  // why the socket ended; valid once the frame channel is closed
	ended   string // a note printed once the terminal is restored
}

// shellProgram turns --cmd into the PTY's cmd and args.
func shellProgram(cmdLine string) (string, []string) {
	switch {
	case cmdLine == "":
		return "/bin/sh", []string{"-c", defaultShell}
	case strings.ContainsAny(cmdLine, " \t"):
		return "/bin/sh", []string{"-c", cmdLine}
	}
	return cmdLine, nil
}

// size is the local terminal's size (0, 0 when unknown: the server's default 80×24).
func (s *shellSession) size() (cols, rows int) {
	for _, f := range []any{s.a.stdin, s.a.stdout} {
		if file, ok := f.(*os.File); ok && term.IsTerminal(int(file.Fd())) {
			if w, h, err := term.GetSize(int(file.Fd())); err == nil {
				return w, h
			}
		}
	}
	return 0, 0
}

func (s *shellSession) send(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.conn.Write(ctx, websocket.MessageText, b)
}

// run opens the session and relays it until the remote program exits; it returns the exit code.
func (s *shellSession) run(ctx context.Context) (code int, err error) {
	if f, ok := s.a.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		s.tty, s.fd = true, int(f.Fd())
	}
	// Signals stay caught for the whole session so that the terminal is restored whatever arrives.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGWINCH, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)

	connCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started, err := s.attach(ctx, connCtx)
	if err != nil {
		return 0, err
	}
	defer s.conn.CloseNow()
	s.ptyTag = started.Tag

	if s.tty {
		old, err := term.MakeRaw(s.fd)
		if err != nil {
			return 0, fmt.Errorf("raw terminal: %w", err)
		}
		s.raw = true
		defer func() {
			_ = term.Restore(s.fd, old)
			s.raw = false
			if s.ended != "" {
				fmt.Fprintln(s.a.stderr, "wrenn: "+s.ended)
			}
		}()
	}

	frames := s.readFrames(connCtx)
	inputDone := make(chan error, 1)
	go func() { inputDone <- s.pumpInput(connCtx) }()

	for {
		select {
		case fr, ok := <-frames:
			if !ok {
				return 0, s.lost()
			}
			done, code, err := s.handle(connCtx, fr)
			if done || err != nil {
				return code, err
			}
		case <-inputDone:
			// Input ended (or could not be sent: the socket is closing); the frames say how the
			// session ends.
			inputDone = nil
		case sig := <-sigs:
			if sig == syscall.SIGWINCH {
				if cols, rows := s.size(); cols > 0 && rows > 0 {
					_ = s.send(connCtx, map[string]any{"type": "resize", "cols": cols, "rows": rows})
				}
				continue
			}
			return s.interrupt(connCtx, frames, sig.(syscall.Signal))
		case <-ctx.Done():
			sig := syscall.SIGINT
			var in *interrupted
			if errors.As(context.Cause(ctx), &in) {
				sig = in.sig
			}
			return s.interrupt(connCtx, frames, sig)
		}
	}
}

// attach dials the PTY socket and starts the program; with --tag, a terminal of that tag that is
// still running is reattached instead.
func (s *shellSession) attach(ctx, connCtx context.Context) (frame, error) {
	cols, rows := s.size()
	cmd, argv := shellProgram(s.cmdLine)
	start := map[string]any{"type": "start", "cmd": cmd}
	if len(argv) > 0 {
		start["args"] = argv
	}
	if cols > 0 && rows > 0 {
		start["cols"], start["rows"] = cols, rows
	}
	if t := os.Getenv("TERM"); t != "" && s.tty {
		start["envs"] = map[string]string{"TERM": t}
	}
	if s.tag != "" {
		start["tag"] = s.tag
	}
	started, err := s.open(ctx, connCtx, start)
	var fe *frameError
	if s.tag != "" && errors.As(err, &fe) && fe.Code == "conflict" {
		connect := map[string]any{"type": "connect", "tag": s.tag}
		if cols > 0 && rows > 0 {
			connect["cols"], connect["rows"] = cols, rows
		}
		return s.open(ctx, connCtx, connect)
	}
	return started, err
}

// open dials, sends the first protocol message and waits for `started`.
func (s *shellSession) open(ctx, connCtx context.Context, first map[string]any) (frame, error) {
	conn, err := s.c.Dial(ctx, capsulePath(s.id, "pty"), apiclient.AuthKey)
	if err != nil {
		return frame{}, err
	}
	s.conn = conn
	if err := s.send(connCtx, first); err != nil {
		conn.CloseNow()
		return frame{}, closedError(err)
	}
	// The first frame is `started`, or the fatal error of the capsule checks or the start.
	rctx, cancel := context.WithCancel(connCtx)
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
			cancel() // Ctrl-C while waiting: closes the socket
		case <-rctx.Done():
		}
	}()
	for {
		_, b, err := conn.Read(rctx)
		if err != nil {
			conn.CloseNow()
			if ctx.Err() != nil {
				return frame{}, ctx.Err()
			}
			return frame{}, closedError(err)
		}
		var fr frame
		if err := json.Unmarshal(b, &fr); err != nil {
			continue
		}
		switch fr.Type {
		case "started":
			return fr, nil
		case "error":
			conn.CloseNow()
			return frame{}, &frameError{Code: fr.Code, Message: fr.Data}
		}
	}
}

// readFrames delivers the server's frames; the channel closes when the socket does (s.readErr).
func (s *shellSession) readFrames(ctx context.Context) <-chan frame {
	ch := make(chan frame)
	go func() {
		defer close(ch)
		for {
			_, b, err := s.conn.Read(ctx)
			if err != nil {
				s.readErr = err
				return
			}
			var fr frame
			if json.Unmarshal(b, &fr) != nil {
				continue
			}
			select {
			case ch <- fr:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// handle acts on one frame; done reports the session is over with code.
func (s *shellSession) handle(ctx context.Context, fr frame) (done bool, code int, err error) {
	switch fr.Type {
	case "output":
		b, err := base64.StdEncoding.DecodeString(fr.Data)
		if err != nil {
			return false, 0, nil
		}
		if _, err := s.a.stdout.Write(b); err != nil {
			return true, 0, err
		}
	case "exit": // the server closes the socket next
		if fr.ExitCode == nil {
			return true, 0, nil
		}
		return true, exitCode(*fr.ExitCode), nil
	case "ping":
		_ = s.send(ctx, map[string]string{"type": "pong"})
	case "error":
		if fr.Fatal {
			return true, 0, &frameError{Code: fr.Code, Message: s.detached(fr.Data)}
		}
		s.warn(fr.Data)
	}
	return false, 0, nil
}

// pumpInput sends stdin to the terminal; at the end of piped input it sends Ctrl-D (EOF for the
// remote terminal).
func (s *shellSession) pumpInput(ctx context.Context) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := s.a.stdin.Read(buf)
		if n > 0 {
			if serr := s.send(ctx, map[string]string{"type": "input", "data": base64.StdEncoding.EncodeToString(buf[:n])}); serr != nil {
				return serr
			}
		}
		if errors.Is(err, io.EOF) && !s.tty {
			return s.send(ctx, map[string]string{"type": "input", "data": base64.StdEncoding.EncodeToString([]byte{4})})
		}
		if err != nil {
			return nil // a closed terminal: the remote side ends or the user interrupts
		}
	}
}

// interrupt ends the session on a local signal: an unnamed terminal is killed (its exit awaited
// briefly so the kill reaches the host); a named one is left running for reattachment.
func (s *shellSession) interrupt(ctx context.Context, frames <-chan frame, sig syscall.Signal) (int, error) {
	if s.tag != "" {
		s.ended = "terminal left running: " + s.reattach()
	} else if err := s.send(ctx, map[string]string{"type": "kill"}); err == nil {
		timer := time.NewTimer(killWait)
		defer timer.Stop()
	wait:
		for {
			select {
			case fr, ok := <-frames:
				if !ok || fr.Type == "exit" {
					break wait
				}
			case <-timer.C:
				break wait
			}
		}
	}
	_ = s.conn.Close(websocket.StatusNormalClosure, "")
	if !s.raw && s.ended != "" {
		fmt.Fprintln(s.a.stderr, "wrenn: "+s.ended)
		s.ended = ""
	}
	return 0, &interrupted{sig: sig}
}

// reattach says how to get back to the terminal.
func (s *shellSession) reattach() string {
	return fmt.Sprintf("reattach with `wrenn capsule shell --tag %s %s`", s.ptyTag, s.id)
}

// detached is msg for a session that ended while the terminal keeps running.
func (s *shellSession) detached(msg string) string {
	return msg + "; the terminal keeps running: " + s.reattach()
}

// lost is the error of a socket that closed before the exit frame.
func (s *shellSession) lost() error {
	if websocket.CloseStatus(s.readErr) == 4000 {
		return errors.New(s.detached("the session was closed for inactivity"))
	}
	return errors.New(s.detached(closedError(s.readErr).Error()))
}

// warn prints a non-fatal error of the session (a failed input, resize or kill).
func (s *shellSession) warn(msg string) {
	if s.raw {
		fmt.Fprintf(s.a.stderr, "\r\nwrenn: %s\r\n", msg)
		return
	}
	fmt.Fprintln(s.a.stderr, "wrenn: "+msg)
}
