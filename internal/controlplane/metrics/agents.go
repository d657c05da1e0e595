package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wrenn/wrenn/api/hostagent/hostagent/v1/hostagentv1connect"
	"github.com/wrenn/wrenn/internal/controlplane/fleet"
)

// Transports yields the base URL and round tripper of a host's agent (fleet.Service, with the
// control plane's mutual TLS).
type Transports interface {
	Transport(ctx context.Context, hostID uuid.UUID) (baseURL string, rt http.RoundTripper, err error)
}

// agentCalls counts the control plane's calls to host agents.
type agentCalls struct {
	calls    *prometheus.CounterVec
	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newAgentCalls() *agentCalls {
	return &agentCalls{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "agent_calls_total",
			Help: "Calls to host agents by procedure (streams count once).",
		}, []string{"procedure"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "agent_call_errors_total",
			Help: "Failed calls to host agents by procedure and Connect code (caller cancellations are not failures).",
		}, []string{"procedure", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "agent_call_duration_seconds",
			Help:    "Latency of unary calls to host agents by procedure.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"procedure"}),
	}
}

func (a *agentCalls) collectors() []prometheus.Collector {
	return []prometheus.Collector{a.calls, a.errors, a.duration}
}

// procedure is the method name of a Connect procedure path ("/hostagent.v1.HostAgentService/Exec" →
// "Exec").
func procedure(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

// failed counts err against proc unless it is nil, the end of a stream, or the caller's cancellation.
func (a *agentCalls) failed(proc string, err error) {
	if err == nil || errors.Is(err, io.EOF) {
		return
	}
	code := connect.CodeOf(err)
	if code == connect.CodeCanceled {
		return
	}
	a.errors.WithLabelValues(proc, code.String()).Inc()
}

// Interceptor returns the Connect client interceptor that records every call.
func (a *agentCalls) interceptor() connect.Interceptor { return interceptor{a} }

type interceptor struct{ a *agentCalls }

func (i interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		proc := procedure(req.Spec().Procedure)
		i.a.calls.WithLabelValues(proc).Inc()
		start := time.Now()
		res, err := next(ctx, req)
		i.a.duration.WithLabelValues(proc).Observe(time.Since(start).Seconds())
		i.a.failed(proc, err)
		return res, err
	}
}

func (i interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		proc := procedure(spec.Procedure)
		i.a.calls.WithLabelValues(proc).Inc()
		return &streamConn{StreamingClientConn: next(ctx, spec), a: i.a, proc: proc}
	}
}

func (i interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// streamConn counts a stream's first failure.
type streamConn struct {
	connect.StreamingClientConn
	a    *agentCalls
	proc string
	once sync.Once
}

func (s *streamConn) fail(err error) {
	if err == nil || errors.Is(err, io.EOF) {
		return
	}
	s.once.Do(func() { s.a.failed(s.proc, err) })
}

func (s *streamConn) Send(m any) error {
	err := s.StreamingClientConn.Send(m)
	s.fail(err)
	return err
}

func (s *streamConn) Receive(m any) error {
	err := s.StreamingClientConn.Receive(m)
	s.fail(err)
	return err
}

// Agents returns a fleet.Agents whose clients record their calls in wrenn_cp_agent_calls_total,
// wrenn_cp_agent_call_errors_total and wrenn_cp_agent_call_duration_seconds. Clients are built over
// t's transports (shared with the fleet's own clients) and cached per host.
func (m *Metrics) Agents(t Transports) fleet.Agents {
	return &agents{t: t, calls: m.calls, clients: map[uuid.UUID]cachedClient{}}
}

type cachedClient struct {
	base   string
	rt     http.RoundTripper
	client hostagentv1connect.HostAgentServiceClient
}

type agents struct {
	t     Transports
	calls *agentCalls

	mu      sync.Mutex
	clients map[uuid.UUID]cachedClient
}

// Agent returns the instrumented client of host hostID's agent; errors as fleet.Agents.
func (a *agents) Agent(ctx context.Context, hostID uuid.UUID) (hostagentv1connect.HostAgentServiceClient, error) {
	base, rt, err := a.t.Transport(ctx, hostID)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		delete(a.clients, hostID) // unreachable or deleted: rebuilt when it is back
		return nil, err
	}
	if c, ok := a.clients[hostID]; ok && c.base == base && c.rt == rt {
		return c.client, nil
	}
	c := cachedClient{base: base, rt: rt, client: hostagentv1connect.NewHostAgentServiceClient(
		&http.Client{Transport: rt}, base, connect.WithInterceptors(a.calls.interceptor()))}
	a.clients[hostID] = c
	return c.client, nil
}
