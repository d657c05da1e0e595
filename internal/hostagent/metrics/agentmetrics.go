// Package metrics is the host agent's Prometheus metrics and readiness: a decorator of the agent
// that times its lifecycle operations and counts their failures, a collector of capsules by state,
// their reservations and the machine's capacity, and the readiness checks of the runtime and the
// capsule network.
package metrics

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wrenn/wrenn/internal/hostagent/capsules"
	"github.com/wrenn/wrenn/internal/hostagent/rpc"
	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// Namespace prefixes every agent series.
const Namespace = "wrenn_agent"

// Operations timed in wrenn_agent_operation_duration_seconds.
const (
	OpCreate   = "create"
	OpResume   = "resume"
	OpPause    = "pause"
	OpDestroy  = "destroy"
	OpSnapshot = "snapshot"
	OpFlatten  = "flatten"
	OpFork     = "fork"
)

var operations = []string{OpCreate, OpResume, OpPause, OpDestroy, OpSnapshot, OpFlatten, OpFork}

// Backend is the agent the decorator wraps (*capsules.Agent).
type Backend interface {
	rpc.Agent
	Info(id string) (capsules.Info, error)
}

// Agent decorates a Backend: lifecycle operations are timed and their failures counted; everything
// else passes through. It is what the Connect API and the shutdown logic call.
type Agent struct {
	Backend
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec

	// List drains the ids the agent auto-paused; the collector lists too, so it keeps what it drained
	// here and the next List hands them on (to the control plane).
	listMu  sync.Mutex
	drained []string
}

var _ rpc.Agent = (*Agent)(nil)

// Wrap returns the decorator of b; register Collectors(a) with the agent's registry.
func Wrap(b Backend) *Agent {
	a := &Agent{
		Backend: b,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "operation_duration_seconds",
			Help:    "Latency of capsule lifecycle operations (create, resume, pause, destroy, snapshot, flatten, fork), failed ones included.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"operation"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "operation_errors_total",
			Help: "Failed capsule lifecycle operations by operation and kind (not_found, exists, invalid, state, canceled, internal).",
		}, []string{"operation", "kind"}),
	}
	for _, op := range operations {
		a.duration.WithLabelValues(op) // series exist before the first operation
	}
	return a
}

// observe records one operation that started at start and ended with err.
func (a *Agent) observe(op string, start time.Time, err error) {
	a.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		a.errors.WithLabelValues(op, errorKind(err)).Inc()
	}
}

// errorKind classifies an agent error for the errors counter.
func errorKind(err error) string {
	switch {
	case errors.Is(err, runtime.ErrNotFound):
		return "not_found"
	case errors.Is(err, runtime.ErrExists):
		return "exists"
	case errors.Is(err, runtime.ErrInvalid):
		return "invalid"
	case errors.Is(err, runtime.ErrState):
		return "state"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	return "internal"
}

func (a *Agent) Create(ctx context.Context, p capsules.CreateParams) (capsules.Info, error) {
	start := time.Now()
	info, err := a.Backend.Create(ctx, p)
	a.observe(OpCreate, start, err)
	return info, err
}

func (a *Agent) Fork(ctx context.Context, id string, targets []capsules.ForkTarget) ([]capsules.Info, error) {
	start := time.Now()
	infos, err := a.Backend.Fork(ctx, id, targets)
	a.observe(OpFork, start, err)
	return infos, err
}

func (a *Agent) Resume(ctx context.Context, p capsules.ResumeParams) (capsules.Info, error) {
	start := time.Now()
	info, err := a.Backend.Resume(ctx, p)
	a.observe(OpResume, start, err)
	return info, err
}

func (a *Agent) Pause(ctx context.Context, id string) error {
	start := time.Now()
	err := a.Backend.Pause(ctx, id)
	a.observe(OpPause, start, err)
	return err
}

func (a *Agent) Destroy(ctx context.Context, id string) error {
	start := time.Now()
	err := a.Backend.Destroy(ctx, id)
	a.observe(OpDestroy, start, err)
	return err
}

func (a *Agent) Snapshot(ctx context.Context, id, teamID, templateID string) (int64, error) {
	start := time.Now()
	n, err := a.Backend.Snapshot(ctx, id, teamID, templateID)
	a.observe(OpSnapshot, start, err)
	return n, err
}

func (a *Agent) Flatten(ctx context.Context, id, teamID, templateID string) (int64, error) {
	start := time.Now()
	n, err := a.Backend.Flatten(ctx, id, teamID, templateID)
	a.observe(OpFlatten, start, err)
	return n, err
}

// List returns every capsule and the ids auto-paused since the last List, including those a
// Capsules call drained meanwhile.
func (a *Agent) List(ctx context.Context) ([]capsules.Info, []string, error) {
	a.listMu.Lock()
	defer a.listMu.Unlock()
	infos, auto, err := a.Backend.List(ctx)
	if err != nil {
		return nil, nil, err
	}
	auto = append(a.drained, auto...)
	a.drained = nil
	return infos, auto, nil
}

// Capsules returns every capsule without draining the auto-paused ids List reports.
func (a *Agent) Capsules(ctx context.Context) ([]capsules.Info, error) {
	a.listMu.Lock()
	defer a.listMu.Unlock()
	infos, auto, err := a.Backend.List(ctx)
	if err != nil {
		return nil, err
	}
	a.drained = append(a.drained, auto...)
	return infos, nil
}
