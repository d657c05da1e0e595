// Package hostapi serves envd's plain HTTP endpoints for the host agent and
// the SDK (docs/envd.md): /health, /init, /snapshot/prepare,
// /envs and /metrics.
package hostapi

import (
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/wrenn/wrenn/internal/envd/defaults"
	"github.com/wrenn/wrenn/internal/envd/httpjson"
	"github.com/wrenn/wrenn/internal/envd/metadata"
	"github.com/wrenn/wrenn/internal/envd/ports"
)

// Config holds the handler's dependencies.
type Config struct {
	Log      *slog.Logger
	Defaults *defaults.Store
	Ports    *ports.Subsystem // nil: no port subsystem
	Metadata metadata.Source  // nil: none
	RunDir   string           // identity files dir, e.g. /run/wrenn; "": none written
	Version  string           // E2B compatibility version for /health
}

type host struct {
	log      *slog.Logger
	defaults *defaults.Store
	ports    *ports.Subsystem
	meta     metadata.Source
	runDir   string
	version  string

	// setClock steps the wall clock to an /init timestamp; nil unless envd
	// is PID 1, so tests and bare local runs never touch the host's clock.
	setClock func(time.Time) error
	now      func() time.Time

	cpu cpuSampler
}

// New returns the handler for /health, /init, /snapshot/prepare, /envs and
// /metrics.
func New(cfg Config) http.Handler {
	h := &host{
		log:      cfg.Log,
		defaults: cfg.Defaults,
		ports:    cfg.Ports,
		meta:     cfg.Metadata,
		runDir:   cfg.RunDir,
		version:  cfg.Version,
		now:      time.Now,
		cpu:      cpuSampler{statPath: "/proc/stat"},
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.defaults == nil {
		h.defaults = defaults.New(nil)
	}
	if os.Getpid() == 1 {
		h.setClock = stepClock
	}
	return h
}

func (h *host) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/health":
		if allow(w, r, http.MethodGet, http.MethodHead) {
			h.health(w, r)
		}
	case "/init":
		if allow(w, r, http.MethodPost) {
			h.init(w, r)
		}
	case "/snapshot/prepare":
		if allow(w, r, http.MethodPost) {
			h.prepareSnapshot(w, r)
		}
	case "/envs":
		if allow(w, r, http.MethodGet, http.MethodHead) {
			httpjson.Write(w, http.StatusOK, h.defaults.Env())
		}
	case "/metrics":
		if allow(w, r, http.MethodGet, http.MethodHead) {
			h.metrics(w, r)
		}
	default:
		httpjson.Error(w, http.StatusNotFound, "no such endpoint: %s", r.URL.Path)
	}
}

// allow answers 405 unless r's method is one of methods.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	httpjson.Error(w, http.StatusMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path)
	return false
}

func (h *host) health(w http.ResponseWriter, _ *http.Request) {
	httpjson.Write(w, http.StatusOK, struct {
		Version string `json:"version"`
	}{h.version})
}

// noContent answers 204 with Cache-Control: no-store.
func noContent(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}
