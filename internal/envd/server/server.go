// Package server assembles envd's HTTP surface: the Connect services, the
// plain HTTP endpoints, CORS, the access-token check, and HTTP/1.1 + h2c on
// one listener.
package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/rs/cors"

	"github.com/wrenn/wrenn/api/envd/filesystem/filesystemconnect"
	"github.com/wrenn/wrenn/api/envd/process/processconnect"
	"github.com/wrenn/wrenn/internal/envd/auth"
	"github.com/wrenn/wrenn/internal/envd/defaults"
)

// Handlers are the parts the server routes to.
type Handlers struct {
	Process    processconnect.ProcessHandler
	Filesystem filesystemconnect.FilesystemHandler
	Files      http.Handler // /files
	Host       http.Handler // /health, /init, /snapshot/prepare, /envs, /metrics
}

// New returns envd's root handler.
func New(log *slog.Logger, d *defaults.Store, h Handlers) http.Handler {
	mux := http.NewServeMux()
	opts := []connect.HandlerOption{connect.WithCompressMinBytes(1024)}
	mux.Handle(processconnect.NewProcessHandler(h.Process, opts...))
	mux.Handle(filesystemconnect.NewFilesystemHandler(h.Filesystem, opts...))
	mux.Handle("/files", h.Files)
	for _, p := range []string{"/health", "/init", "/snapshot/prepare", "/envs", "/metrics"} {
		mux.Handle(p, h.Host)
	}
	c := cors.New(cors.Options{
		AllowedOrigins: []string{"*"},
		AllowedMethods: []string{
			http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
		},
		AllowedHeaders: []string{"*"},
		ExposedHeaders: []string{
			"Connect-Protocol-Version", "Connect-Timeout-Ms", "Connect-Content-Encoding",
			"Connect-Accept-Encoding", "Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin",
			"Location", "Cache-Control", "X-Content-Type-Options",
		},
		MaxAge: 7200,
	})
	return c.Handler(auth.Middleware(d.Token, zeroTimeoutMeansNone(mux)))
}

// zeroTimeoutMeansNone drops "Connect-Timeout-Ms: 0": in the envd protocol 0
// means no limit (docs/envd.md), while connect-go would read it as already expired.
func zeroTimeoutMeansNone(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Get("Connect-Timeout-Ms"); v != "" && strings.Trim(v, "0") == "" {
			r.Header.Del("Connect-Timeout-Ms")
		}
		next.ServeHTTP(w, r)
	})
}

// Serve serves handler on ln with HTTP/1.1 and cleartext HTTP/2 until ctx
// ends, then shuts down gracefully (bounded by a short grace period).
// connState, if not nil, sees every connection's state changes.
func Serve(ctx context.Context, log *slog.Logger, ln net.Listener, handler http.Handler, connState func(net.Conn, http.ConnState)) error {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           handler,
		Protocols:         &protocols,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       640 * time.Second, // streams and transfers have no read/write timeout
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnState:         connState,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
