package guest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
)

const (
	// defaultExecTimeoutSec is a foreground exec's time limit without timeout_sec (docs/api.md).
	defaultExecTimeoutSec = 30
	// execGrace is how much longer than the command's own limit the control plane waits for the agent.
	execGrace = 15 * time.Second
	// noTimeoutSec asks the agent for a command without a time limit: the agent reads 0 as its default
	// (30 s), and a limit this long (68 years) is past what Connect carries to envd, so the command
	// gets no deadline at all.
	noTimeoutSec = math.MaxInt32
)

// Encodings of exec output (docs/api.md).
const (
	encodingUTF8   = "utf-8"
	encodingBase64 = "base64"
)

// execRequest is the body of POST …/exec.
type execRequest struct {
	Cmd        string            `json:"cmd"`
	Args       []string          `json:"args"`
	Envs       map[string]string `json:"envs"`
	Cwd        string            `json:"cwd"`
	TimeoutSec int64             `json:"timeout_sec"`
	Background bool              `json:"background"`
	Tag        string            `json:"tag"`
}

func (q *execRequest) validate() error {
	switch {
	case q.Cmd == "":
		return apierr.InvalidRequest("cmd is required")
	case q.TimeoutSec < 0:
		return apierr.InvalidRequest("timeout_sec must not be negative")
	case q.TimeoutSec > math.MaxInt32:
		return apierr.InvalidRequestf("timeout_sec must be at most %d", math.MaxInt32)
	case q.Tag != "" && !validTag(q.Tag):
		return apierr.InvalidRequest(tagMessage(q.Tag))
	}
	return nil
}

// execResult is the 200 answer of a foreground exec.
type execResult struct {
	CapsuleID  string `json:"capsule_id"`
	SandboxID  string `json:"sandbox_id"`
	Cmd        string `json:"cmd"`
	Stdout     string `json:"stdout"`
	Stderr     string `json:"stderr"`
	ExitCode   int32  `json:"exit_code"`
	DurationMS int64  `json:"duration_ms"`
	Encoding   string `json:"encoding"`
}

// backgroundResult is the 202 answer of a background exec.
type backgroundResult struct {
	CapsuleID string `json:"capsule_id"`
	SandboxID string `json:"sandbox_id"`
	Cmd       string `json:"cmd"`
	PID       uint32 `json:"pid"`
	Tag       string `json:"tag"`
}

// exec serves POST …/exec (docs/api.md).
func (s *Service) exec(sc scope) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var q execRequest
		if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &q); err != nil {
			apierr.Write(w, r, err)
			return
		}
		if err := q.validate(); err != nil {
			apierr.Write(w, r, err)
			return
		}
		t, err := s.target(r.Context(), sc, httpapi.Identity(r), r.PathValue("id"))
		if err != nil {
			apierr.Write(w, r, err)
			return
		}
		if q.Background {
			s.background(w, r, t, q)
			return
		}
		timeout := q.TimeoutSec
		if timeout == 0 {
			timeout = defaultExecTimeoutSec
		}
		ctx, cancel := context.WithTimeout(r.Context(), time.Duration(timeout)*time.Second+execGrace)
		defer cancel()
		started := time.Now()
		res, err := t.Agent.Exec(ctx, connect.NewRequest(&hav1.ExecRequest{
			SandboxId: t.PublicID, Cmd: q.Cmd, Args: q.Args, Envs: q.Envs, Cwd: q.Cwd, TimeoutSec: int32(timeout),
		}))
		elapsed := time.Since(started)
		if err != nil {
			apierr.Write(w, r, apierr.FromAgent(r.Context(), err))
			return
		}
		out := execResult{
			CapsuleID: t.PublicID, SandboxID: t.PublicID, Cmd: q.Cmd, ExitCode: res.Msg.GetExitCode(),
			DurationMS: elapsed.Milliseconds(), Encoding: encodingUTF8,
		}
		stdout, stderr := res.Msg.GetStdout(), res.Msg.GetStderr()
		if utf8.Valid(stdout) && utf8.Valid(stderr) {
			out.Stdout, out.Stderr = string(stdout), string(stderr)
		} else {
			out.Encoding = encodingBase64
			out.Stdout = base64.StdEncoding.EncodeToString(stdout)
			out.Stderr = base64.StdEncoding.EncodeToString(stderr)
		}
		httpapi.WriteJSON(w, http.StatusOK, out)
	}
}

// background starts q detached and answers 202 once its PID is known.
func (s *Service) background(w http.ResponseWriter, r *http.Request, t capsules.Target, q execRequest) {
	tag := q.Tag
	if tag == "" {
		tag = newTag("proc-")
	}
	res, err := t.Agent.StartBackground(r.Context(), connect.NewRequest(&hav1.StartBackgroundRequest{
		SandboxId: t.PublicID, Cmd: q.Cmd, Args: q.Args, Tag: tag, Envs: q.Envs, Cwd: q.Cwd,
	}))
	if err != nil {
		apierr.Write(w, r, apierr.FromAgent(r.Context(), err))
		return
	}
	httpapi.WriteJSON(w, http.StatusAccepted, backgroundResult{
		CapsuleID: t.PublicID, SandboxID: t.PublicID, Cmd: q.Cmd, PID: res.Msg.GetPid(), Tag: tag,
	})
}

// execStart is the first client message of an exec stream (docs/api.md).
type execStart struct {
	Type       string            `json:"type"`
	Cmd        string            `json:"cmd"`
	Args       []string          `json:"args"`
	Envs       map[string]string `json:"envs"`
	Cwd        string            `json:"cwd"`
	TimeoutSec int64             `json:"timeout_sec"`
}

// clientMessage is any client message; only its type is read.
type clientMessage struct {
	Type string `json:"type"`
}

// Server frames of the exec and process streams.
type (
	startFrame struct {
		Type string `json:"type"` // "start"
		PID  uint32 `json:"pid"`
		Tag  string `json:"tag,omitempty"`
	}
	outputFrame struct {
		Type   string  `json:"type"` // "stdout" | "stderr"
		Data   string  `json:"data"`
		Offset *uint64 `json:"offset,omitempty"`
	}
	exitFrame struct {
		Type     string `json:"type"` // "exit"
		ExitCode int32  `json:"exit_code"`
	}
)

// execStream serves GET (WS) …/exec/stream (docs/api.md): the first message starts the command, its output
// follows as text, "stop" kills it, and a socket that closes before the exit kills it too.
func (s *Service) execStream(sc scope) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := capsules.ParseID(r.PathValue("id")); err != nil {
			apierr.Write(w, r, err)
			return
		}
		ws, t, ok := s.accept(w, r, sc)
		if !ok {
			return
		}
		defer ws.finish()

		var first []byte
		select {
		case first, ok = <-ws.in:
			if !ok {
				return
			}
		case <-ws.ctx.Done():
			return
		}
		var q execStart
		if err := json.Unmarshal(first, &q); err != nil || q.Type != "start" {
			ws.fail(apierr.InvalidRequest("first message must be type 'start'"))
			return
		}
		switch {
		case q.Cmd == "":
			ws.fail(apierr.InvalidRequest("cmd is required"))
			return
		case q.TimeoutSec < 0:
			ws.fail(apierr.InvalidRequest("timeout_sec must not be negative"))
			return
		}
		timeout := int32(noTimeoutSec)
		if q.TimeoutSec > 0 && q.TimeoutSec < noTimeoutSec {
			timeout = int32(q.TimeoutSec)
		}
		// Cancelling the agent stream (the socket closed before the exit) kills the command.
		st, err := t.Agent.ExecStream(ws.ctx, connect.NewRequest(&hav1.ExecRequest{
			SandboxId: t.PublicID, Cmd: q.Cmd, Args: q.Args, Envs: q.Envs, Cwd: q.Cwd, TimeoutSec: timeout,
		}))
		if err != nil {
			ws.failAgent(err)
			return
		}
		var pid uint32
		stopped := false // stop arrived before the start event
		kill := func() {
			ctx, cancel := context.WithTimeout(ws.ctx, hostCallTimeout)
			defer cancel()
			_, err := t.Agent.KillProcess(ctx, connect.NewRequest(&hav1.KillProcessRequest{
				SandboxId: t.PublicID, Selector: &hav1.KillProcessRequest_Pid{Pid: pid}, Signal: "SIGKILL",
			}))
			if err != nil && !apierr.AgentNotFound(err) {
				_ = ws.send(errorFrame(apierr.FromAgent(ws.ctx, err)))
			}
		}
		// A client that goes away ends pump: the deferred finish cancels the stream, which kills.
		pump(ws, st, pumpOptions{
			onStart: func(p uint32) {
				pid = p
				if stopped {
					kill()
				}
			},
			onMessage: func(msg []byte) {
				var m clientMessage
				if json.Unmarshal(msg, &m) == nil && m.Type == "stop" {
					if pid == 0 {
						stopped = true
					} else {
						kill()
					}
				}
			},
		})
	}
}

// dataFrame renders an output chunk: as text (invalid UTF-8 replaced by U+FFFD) or base64, with the
// byte offset after it when withOffset.
func dataFrame(d *hav1.ProcessData, b64, withOffset bool) outputFrame {
	f := outputFrame{Type: "stdout"}
	var b []byte
	switch o := d.GetOutput().(type) {
	case *hav1.ProcessData_Stdout:
		b = o.Stdout
	case *hav1.ProcessData_Stderr:
		f.Type, b = "stderr", o.Stderr
	}
	if b64 {
		f.Data = base64.StdEncoding.EncodeToString(b)
	} else {
		f.Data = strings.ToValidUTF8(string(b), "\uFFFD")
	}
	if withOffset {
		off := d.GetEndOffset()
		f.Offset = &off
	}
	return f
}
