package builds

import (
	"context"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
)

// eventPoll is how often the events socket reads the build: any control plane may be running it, and
// the database is where its progress is (docs/api.md: pushed within 1 s).
const eventPoll = 300 * time.Millisecond

// Messages of GET /v1/admin/builds/{id}/events (docs/api.md).
type (
	buildMessage struct {
		Type  string `json:"type"` // "build"
		Build Build  `json:"build"`
	}
	stepMessage struct {
		Type        string   `json:"type"` // "step"
		CurrentStep int32    `json:"current_step"`
		TotalSteps  int32    `json:"total_steps"`
		Log         LogEntry `json:"log"`
	}
	statusMessage struct {
		Type   string `json:"type"` // "status"
		Status string `json:"status"`
		Error  string `json:"error,omitempty"`
	}
)

func terminal(status string) bool {
	return status == store.BuildSuccess || status == store.BuildFailed || status == store.BuildCancelled
}

// handleEvents streams a build's progress: its state first, then each finished step and each status
// change; after a terminal status the socket is closed normally.
func (s *Service) handleEvents(authn *auth.Authenticator) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := ids.Build.Parse(r.PathValue("id"))
		if err != nil {
			apierr.Write(w, r, apierr.InvalidRequest("invalid build ID"))
			return
		}
		c, _, ok := httpapi.AcceptWebSocket(w, r, authn, auth.KindAdmin)
		if !ok {
			return
		}
		defer c.CloseNow()
		ctx := c.CloseRead(r.Context())
		if err := s.follow(ctx, c, id); err != nil {
			httpapi.CloseWithError(ctx, c, err)
			return
		}
		_ = c.Close(websocket.StatusNormalClosure, "build finished")
	}
}

// follow sends the messages of build id until it is terminal.
func (s *Service) follow(ctx context.Context, c *websocket.Conn, id uuid.UUID) error {
	b, err := s.store.GetBuild(ctx, id)
	if store.IsNotFound(err) {
		return apierr.NotFound("build not found")
	}
	if err != nil {
		return apierr.Internal(err)
	}
	v := view(b)
	if err := httpapi.WriteFrame(ctx, c, buildMessage{Type: "build", Build: v}); err != nil {
		return nil
	}
	sent, status := len(v.Logs), v.Status
	t := time.NewTicker(eventPoll)
	defer t.Stop()
	for !terminal(status) {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		b, err := s.store.GetBuild(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return apierr.Internal(err)
		}
		v := view(b)
		for ; sent < len(v.Logs); sent++ {
			// Steps finish in order: after step N, N steps are done.
			m := stepMessage{Type: "step", CurrentStep: int32(v.Logs[sent].Step), TotalSteps: v.TotalSteps, Log: v.Logs[sent]}
			if err := httpapi.WriteFrame(ctx, c, m); err != nil {
				return nil
			}
		}
		if v.Status != status {
			status = v.Status
			if err := httpapi.WriteFrame(ctx, c, statusMessage{Type: "status", Status: status, Error: v.Error}); err != nil {
				return nil
			}
		}
	}
	return nil
}
