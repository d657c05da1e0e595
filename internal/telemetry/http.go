package telemetry

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HTTPMetrics is the latency histogram of an HTTP API: <namespace>_http_request_duration_seconds
// {route, method, status} where route is the matched route pattern ("unmatched" for 404/405 answers
// of unknown paths) and status the class of the answer ("2xx", …; "1xx" for WebSocket upgrades, whose
// duration is the connection's lifetime).
type HTTPMetrics struct {
	duration *prometheus.HistogramVec
}

// NewHTTPMetrics creates the histogram; register it with Collectors.
func NewHTTPMetrics(namespace string) *HTTPMetrics {
	return &HTTPMetrics{duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace,
		Name:      "http_request_duration_seconds",
		Help:      "API request latency by route pattern, method and status class.",
		Buckets:   []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"route", "method", "status"})}
}

// Collectors returns what to register.
func (m *HTTPMetrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.duration}
}

// Middleware observes every request next serves; route returns the pattern r is routed to ("" when
// none). The route is looked up before next runs, so handlers that rewrite the request do not change
// the label.
func (m *HTTPMetrics) Middleware(next http.Handler, route func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pattern := route(r)
		if pattern == "" {
			pattern = "unmatched"
		}
		rec := &statusRecorder{ResponseWriter: w}
		start := time.Now()
		defer func() {
			status := rec.status
			if status == 0 {
				status = http.StatusOK // nothing written: net/http answers 200
			}
			m.duration.WithLabelValues(pattern, r.Method, StatusClass(status)).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(rec, r)
	})
}

// statusRecorder remembers the first status written. It keeps streaming (Flush) and WebSocket
// upgrades (Hijack) working, and Unwrap lets http.ResponseController reach the real writer.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	_ = http.NewResponseController(s.ResponseWriter).Flush()
}

func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("telemetry: the response writer cannot be hijacked")
	}
	if s.status == 0 {
		s.status = http.StatusSwitchingProtocols
	}
	return h.Hijack()
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
