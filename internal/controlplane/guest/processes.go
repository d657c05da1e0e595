package guest

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"connectrpc.com/connect"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
)

// selector is a {selector} of the process routes (docs/api.md): all digits and ≤ 4294967295 is a PID,
// anything else a tag.
type selector struct {
	pid   uint32
	isPID bool
	tag   string
}

func parseSelector(s string) selector {
	if allDigits(s) {
		if n, err := strconv.ParseUint(s, 10, 32); err == nil {
			return selector{pid: uint32(n), isPID: true}
		}
	}
	return selector{tag: s}
}

func (sel selector) String() string {
	if sel.isPID {
		return "pid " + strconv.FormatUint(uint64(sel.pid), 10)
	}
	return "tag " + sel.tag
}

// possible reports whether a process can have sel: PID 0 and tags breaking docs/api.md never match.
func (sel selector) possible() bool {
	if sel.isPID {
		return sel.pid != 0
	}
	return validTag(sel.tag)
}

func (sel selector) matches(p *hav1.ProcessInfo) bool {
	if sel.isPID {
		return p.GetPid() == sel.pid
	}
	return p.GetTag() == sel.tag
}

// notFound is the 404 of a selector no process has.
func (sel selector) notFound() error {
	return apierr.NotFound("process with " + sel.String() + " not found")
}

// Process is an entry of GET …/processes (docs/api.md).
type Process struct {
	PID       uint32     `json:"pid"`
	Tag       string     `json:"tag,omitempty"`
	Cmd       string     `json:"cmd"`
	Args      []string   `json:"args,omitempty"`
	Status    string     `json:"status"`
	ExitCode  *int32     `json:"exit_code,omitempty"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	ExitedAt  *time.Time `json:"exited_at,omitempty"`
}

const statusExited = "exited"

func processView(p *hav1.ProcessInfo) Process {
	v := Process{PID: p.GetPid(), Tag: p.GetTag(), Cmd: p.GetCmd(), Args: p.GetArgs(), Status: p.GetStatus()}
	if p.GetStatus() == statusExited {
		code := p.GetExitCode()
		v.ExitCode = &code
		if p.GetExitedAt() != nil {
			t := p.GetExitedAt().AsTime().UTC()
			v.ExitedAt = &t
		}
	}
	if p.GetStartedAt() != nil {
		t := p.GetStartedAt().AsTime().UTC()
		v.StartedAt = &t
	}
	return v
}

// listProcesses serves GET …/processes[?include_exited=true].
func (s *Service) listProcesses(sc scope) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		includeExited := false
		if v := r.URL.Query().Get("include_exited"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				apierr.Write(w, r, apierr.InvalidRequest("include_exited must be true or false"))
				return
			}
			includeExited = b
		}
		t, err := s.target(r.Context(), sc, httpapi.Identity(r), r.PathValue("id"))
		if err != nil {
			apierr.Write(w, r, err)
			return
		}
		res, err := t.Agent.ListProcesses(r.Context(), connect.NewRequest(&hav1.ListProcessesRequest{
			SandboxId: t.PublicID, IncludeExited: includeExited,
		}))
		if err != nil {
			apierr.Write(w, r, apierr.FromAgent(r.Context(), err))
			return
		}
		out := make([]Process, 0, len(res.Msg.GetProcesses()))
		for _, p := range res.Msg.GetProcesses() {
			out = append(out, processView(p))
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"processes": out})
	}
}

// killProcess serves DELETE …/processes/{selector}[?signal=SIGTERM|SIGKILL].
func (s *Service) killProcess(sc scope) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sig := r.URL.Query().Get("signal")
		switch sig {
		case "":
			sig = "SIGKILL"
		case "SIGKILL", "SIGTERM":
		default:
			apierr.Write(w, r, apierr.InvalidRequest("signal must be SIGTERM or SIGKILL"))
			return
		}
		sel := parseSelector(r.PathValue("selector"))
		t, err := s.target(r.Context(), sc, httpapi.Identity(r), r.PathValue("id"))
		if err != nil {
			apierr.Write(w, r, err)
			return
		}
		if !sel.possible() {
			apierr.Write(w, r, sel.notFound())
			return
		}
		req := &hav1.KillProcessRequest{SandboxId: t.PublicID, Signal: sig}
		if sel.isPID {
			req.Selector = &hav1.KillProcessRequest_Pid{Pid: sel.pid}
		} else {
			req.Selector = &hav1.KillProcessRequest_Tag{Tag: sel.tag}
		}
		_, err = t.Agent.KillProcess(r.Context(), connect.NewRequest(req))
		if err == nil {
			httpapi.NoContent(w)
			return
		}
		if !apierr.AgentNotFound(err) {
			apierr.Write(w, r, apierr.FromAgent(r.Context(), err))
			return
		}
		// The agent signals live processes only: tell an exited one from an unknown one.
		if p, lerr := s.findProcess(r.Context(), t, sel); lerr != nil {
			apierr.Write(w, r, apierr.FromAgent(r.Context(), lerr))
		} else if p != nil && p.GetStatus() == statusExited {
			apierr.Write(w, r, apierr.InvalidState("process with "+sel.String()+" has already exited"))
		} else {
			apierr.Write(w, r, sel.notFound())
		}
	}
}

// findProcess returns the capsule's process matching sel, a running one before an exited record;
// nil when there is none.
func (s *Service) findProcess(ctx context.Context, t capsules.Target, sel selector) (*hav1.ProcessInfo, error) {
	res, err := t.Agent.ListProcesses(ctx, connect.NewRequest(&hav1.ListProcessesRequest{SandboxId: t.PublicID, IncludeExited: true}))
	if err != nil {
		return nil, err
	}
	var found *hav1.ProcessInfo
	for _, p := range res.Msg.GetProcesses() {
		if !sel.matches(p) {
			continue
		}
		if p.GetStatus() != statusExited {
			return p, nil
		}
		if found == nil {
			found = p
		}
	}
	return found, nil
}

// processStream serves GET (WS) …/processes/{selector}/stream[?offset=N][&encoding=text|base64]
// (docs/api.md): start, the retained output from offset, live output, exit, close 1000. Client messages
// other than the auth message are ignored; closing the socket ends only the stream.
func (s *Service) processStream(sc scope) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := capsules.ParseID(r.PathValue("id")); err != nil {
			apierr.Write(w, r, err)
			return
		}
		q := r.URL.Query()
		var offset uint64
		if v := q.Get("offset"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				apierr.Write(w, r, apierr.InvalidRequest("offset must be a non-negative integer"))
				return
			}
			offset = n
		}
		b64 := false
		switch q.Get("encoding") {
		case "", "text":
		case "base64":
			b64 = true
		default:
			apierr.Write(w, r, apierr.InvalidRequest("encoding must be text or base64"))
			return
		}
		sel := parseSelector(r.PathValue("selector"))

		ws, t, ok := s.accept(w, r, sc)
		if !ok {
			return
		}
		defer ws.finish()
		if !sel.possible() {
			ws.fail(sel.notFound())
			return
		}
		req := &hav1.ConnectProcessRequest{SandboxId: t.PublicID, Offset: offset}
		tag := sel.tag
		if sel.isPID {
			req.Selector = &hav1.ConnectProcessRequest_Pid{Pid: sel.pid}
			// The start frame names the tag; the agent's stream carries only the PID.
			if p, err := s.findProcess(ws.ctx, t, sel); err == nil && p != nil {
				tag = p.GetTag()
			}
		} else {
			req.Selector = &hav1.ConnectProcessRequest_Tag{Tag: sel.tag}
		}
		st, err := t.Agent.ConnectProcess(ws.ctx, connect.NewRequest(req))
		if err != nil {
			ws.failAgent(err)
			return
		}
		pump(ws, st, pumpOptions{tag: tag, base64: b64, offsets: true})
	}
}
