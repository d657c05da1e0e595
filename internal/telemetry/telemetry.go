// Package telemetry holds what the control plane and the host agent share for operations: a Prometheus
// registry with the Go runtime and process collectors, the /metrics handler (optionally behind a bearer
// token), the HTTP latency middleware, and the /health (liveness) and /ready (readiness) handlers.
// The metrics of each component live in controlplane/metrics and hostagent/metrics.
package telemetry

import (
	"crypto/subtle"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry with the Go runtime and process collectors and a build info gauge
// <namespace>_build_info{version} = 1.
func NewRegistry(namespace, version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   namespace,
		Name:        "build_info",
		Help:        "Always 1; the version label is the running release.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	info.Set(1)
	reg.MustRegister(info)
	return reg
}

// MetricsHandler serves g in the Prometheus exposition formats. With a token, requests must carry
// "Authorization: Bearer <token>" (else 401). A collector that fails (the database is down) does not
// fail the scrape: the other series are served (the collectors report such failures in gauges of
// their own).
func MetricsHandler(g prometheus.Gatherer, token string) http.Handler {
	h := promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	if token == "" {
		return h
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			http.Error(w, "metrics need Authorization: Bearer <metrics token>", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// StatusClass returns the class of an HTTP status code: "2xx", "4xx", …
func StatusClass(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return string(rune('0'+code/100)) + "xx"
}

// IsProbe reports whether r is a GET or HEAD of one of paths (how the components mount /metrics,
// /health and /ready beside their APIs).
func IsProbe(r *http.Request, paths ...string) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	for _, want := range paths {
		if r.URL.Path == want {
			return true
		}
	}
	return false
}
