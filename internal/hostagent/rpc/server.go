// Package rpc serves the host agent's hostagent.v1 Connect API: it
// validates requests, hands lifecycle calls to the agent and passes process,
// terminal and file calls straight through to the capsule's envd.
package rpc

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/hostagent/hostagent/v1/hostagentv1connect"
	"github.com/wrenn/wrenn/internal/hostagent/capsules"
	"github.com/wrenn/wrenn/internal/hostagent/envdclient"
)

// Agent is what the API needs from the host agent (internal/hostagent/capsules).
type Agent interface {
	Create(ctx context.Context, p capsules.CreateParams) (capsules.Info, error)
	Resume(ctx context.Context, p capsules.ResumeParams) (capsules.Info, error)
	Pause(ctx context.Context, id string) error
	Destroy(ctx context.Context, id string) error
	Ping(ctx context.Context, id string) error
	List(ctx context.Context) (infos []capsules.Info, autoPaused []string, err error)
	// Envd returns a client for a running capsule's envd and marks the
	// capsule active; the capsule counts as busy (never idle-paused) until
	// done is called. Not running → capsules.ErrState; unknown → capsules.ErrNotFound.
	Envd(ctx context.Context, id string) (c *envdclient.Client, info capsules.Info, done func(), err error)
	Snapshot(ctx context.Context, id, teamID, templateID string) (sizeBytes int64, err error)
	Flatten(ctx context.Context, id, teamID, templateID string) (sizeBytes int64, err error)
	DeleteTemplate(ctx context.Context, teamID, templateID string) error
	Fork(ctx context.Context, id string, targets []capsules.ForkTarget) ([]capsules.Info, error)
	// SetNamedPool is the control plane setting a template's warm pool
	// (size 0: back to the agent's own -pool size, or none).
	SetNamedPool(ctx context.Context, s capsules.PoolSpec) error
	Pools() []capsules.PoolStat
	Metrics(ctx context.Context, id string, r capsules.MetricsRange) ([]capsules.MetricPoint, error)
	FlushMetrics(ctx context.Context, id string) (tiers [3][]capsules.MetricPoint, err error)
	Terminate(ctx context.Context) error
}

// Limits of what one call moves in a single message.
const (
	// maxFileBytes bounds WriteFile and ReadFile; larger files go through
	// WriteFileStream and ReadFileStream.
	maxFileBytes = 64 << 20
	// maxExecOutput bounds the stdout and the stderr Exec collects (each);
	// output beyond it is dropped while the command runs on.
	maxExecOutput = 16 << 20
	// fileChunk is the size of ReadFileStream chunks.
	fileChunk = 64 << 10
	// maxMessageBytes bounds any request message: a whole WriteFile plus
	// room for its other fields.
	maxMessageBytes = maxFileBytes + 64<<10
)

// Server implements hostagentv1connect.HostAgentServiceHandler.
type Server struct {
	agent Agent
	log   *slog.Logger
}

var _ hostagentv1connect.HostAgentServiceHandler = (*Server)(nil)

// New returns the API over a.
func New(a Agent, log *slog.Logger) *Server {
	return &Server{agent: a, log: log}
}

// Handler returns the route prefix and HTTP handler of the service.
func (s *Server) Handler() (path string, h http.Handler) {
	return hostagentv1connect.NewHostAgentServiceHandler(s, connect.WithReadMaxBytes(maxMessageBytes))
}

// envd returns the envd client of a running capsule. The caller must call
// done when it no longer talks to envd (for streams: when the stream ends).
func (s *Server) envd(ctx context.Context, id string) (*envdclient.Client, capsules.Info, func(), error) {
	c, info, done, err := s.agent.Envd(ctx, id)
	if err != nil {
		return nil, capsules.Info{}, nil, s.fail(ctx, "envd", id, err)
	}
	if done == nil {
		done = func() {}
	}
	return c, info, done, nil
}

// fail maps err to a Connect error and logs what the caller cannot fix.
func (s *Server) fail(ctx context.Context, op, id string, err error) error {
	ce := toConnect(err)
	switch ce.Code() {
	case connect.CodeInternal, connect.CodeUnknown, connect.CodeUnavailable, connect.CodeDataLoss:
		s.log.LogAttrs(ctx, slog.LevelWarn, "agent api call failed",
			slog.String("op", op), slog.String("capsule_id", id), slog.String("error", err.Error()))
	default:
		s.log.LogAttrs(ctx, slog.LevelDebug, "agent api call refused",
			slog.String("op", op), slog.String("capsule_id", id), slog.String("code", ce.Code().String()),
			slog.String("error", err.Error()))
	}
	return ce
}

// asUser makes an envd Connect request run as user (envd reads the
// Basic-auth username); empty leaves envd's default user.
func asUser(h http.Header, user string) {
	if user != "" {
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":")))
	}
}

// pick returns the first non-empty string.
func pick(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// detached returns a context without ctx's deadline that is still cancelled
// with ctx. envd turns a deadline on Process.Start into the process's
// lifetime (Connect-Timeout-Ms); detached streams leave long-lived
// processes alive when the caller goes away.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	d, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	return d, func() {
		stop()
		cancel()
	}
}
