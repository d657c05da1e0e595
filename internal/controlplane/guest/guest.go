// Package guest serves the operations inside a running capsule (docs/api.md–docs/api.md):
// foreground and background exec, the exec stream, the process table (list, kill, output streams with
// replay), file transfers and the file browser, and PTY sessions. Every route resolves its capsule with
// capsules.Resolver (docs/api.md) and calls the capsule's host agent; the same routes are served to platform
// admins under /v1/admin/capsules for the platform team's capsules.
package guest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
	"github.com/wrenn/wrenn/internal/controlplane/store"
)

// Defaults of Config.
const (
	DefaultPTYIdleTimeout  = 120 * time.Second
	DefaultPTYPingInterval = 30 * time.Second
)

// Limits of the contract.
const (
	// MaxWriteBytes bounds the file of POST …/files/write (docs/api.md); files/stream/write has no cap.
	MaxWriteBytes = 100 << 20
	// chunkSize is the unit streamed file transfers move end to end.
	chunkSize = 64 << 10
	// hostCallTimeout bounds each PTY input, resize or kill call and the kill of an exec stream.
	hostCallTimeout = 5 * time.Second
)

// adminPrefix is the platform admins' capsule subtree (docs/api.md); it has no /v1/sandboxes alias.
const adminPrefix = "/v1/admin/capsules"

// Config holds the dependencies of a Service.
type Config struct {
	// Resolver runs docs/api.md checks and hands out the capsule's agent (required).
	Resolver *capsules.Resolver
	Log      *slog.Logger
	// PTYIdleTimeout closes a PTY socket that sent no message for this long (default 120 s).
	PTYIdleTimeout time.Duration
	// PTYPingInterval is how often PTY sockets get a ping frame (default 30 s).
	PTYPingInterval time.Duration
}

// Service serves the guest routes.
type Service struct {
	res          *capsules.Resolver
	log          *slog.Logger
	idleTimeout  time.Duration
	pingInterval time.Duration
}

// New returns a Service; Config.Resolver is required.
func New(cfg Config) (*Service, error) {
	if cfg.Resolver == nil {
		return nil, errors.New("guest: Config.Resolver is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.PTYIdleTimeout <= 0 {
		cfg.PTYIdleTimeout = DefaultPTYIdleTimeout
	}
	if cfg.PTYPingInterval <= 0 {
		cfg.PTYPingInterval = DefaultPTYPingInterval
	}
	return &Service{res: cfg.Resolver, log: cfg.Log, idleTimeout: cfg.PTYIdleTimeout, pingInterval: cfg.PTYPingInterval}, nil
}

// scope is who a route serves: team members (KEY|JWT, the caller's team) or platform admins (ADMIN,
// the platform team).
type scope struct {
	kind  auth.Kind
	admin bool
	authn *auth.Authenticator
}

// team returns the team whose capsules the caller may reach.
func (sc scope) team(id auth.Identity) (uuid.UUID, error) {
	if sc.admin {
		return store.PlatformTeamID, nil
	}
	return capsules.TeamOf(id)
}

// Register registers the guest routes: under /v1/capsules and /v1/sandboxes for KEY|JWT callers, and
// (all but files/stream/*) under /v1/admin/capsules for platform admins.
func (s *Service) Register(rt *httpapi.Router) {
	pub := scope{kind: auth.KindKeyOrJWT, authn: rt.Authenticator()}
	adm := scope{kind: auth.KindAdmin, admin: true, authn: rt.Authenticator()}

	for _, r := range s.routes(pub) {
		switch {
		case r.ws:
			rt.HandleCapsuleWS(r.sub, pub.kind, r.h)
		case r.stream:
			rt.HandleCapsuleStream(r.method, r.sub, pub.kind, r.h)
		default:
			rt.HandleCapsule(r.method, r.sub, pub.kind, r.h)
		}
	}
	rt.HandleCapsule(http.MethodPost, "/{id}/files/stream/read", pub.kind, s.streamRead(pub))
	rt.HandleCapsuleStream(http.MethodPost, "/{id}/files/stream/write", pub.kind, s.streamWrite(pub))

	for _, r := range s.routes(adm) {
		switch {
		case r.ws:
			rt.HandleWS(adminPrefix+r.sub, adm.kind, r.h)
		case r.stream:
			rt.HandleStream(r.method, adminPrefix+r.sub, adm.kind, r.h)
		default:
			rt.Handle(r.method, adminPrefix+r.sub, adm.kind, r.h)
		}
	}
}

type route struct {
	method, sub string
	ws          bool
	stream      bool // an upload: no body-read deadline
	h           http.HandlerFunc
}

// routes are the guest routes both scopes serve.
func (s *Service) routes(sc scope) []route {
	return []route{
		{method: http.MethodPost, sub: "/{id}/exec", h: s.exec(sc)},
		{sub: "/{id}/exec/stream", ws: true, h: s.execStream(sc)},
		{method: http.MethodGet, sub: "/{id}/processes", h: s.listProcesses(sc)},
		{method: http.MethodDelete, sub: "/{id}/processes/{selector}", h: s.killProcess(sc)},
		{sub: "/{id}/processes/{selector}/stream", ws: true, h: s.processStream(sc)},
		{method: http.MethodPost, sub: "/{id}/files/read", h: s.readFile(sc)},
		{method: http.MethodPost, sub: "/{id}/files/write", stream: true, h: s.writeFile(sc)},
		{method: http.MethodPost, sub: "/{id}/files/list", h: s.listDir(sc)},
		{method: http.MethodPost, sub: "/{id}/files/mkdir", h: s.makeDir(sc)},
		{method: http.MethodPost, sub: "/{id}/files/remove", h: s.removePath(sc)},
		{sub: "/{id}/pty", ws: true, h: s.pty(sc)},
	}
}

// target resolves the request's capsule for the caller (docs/api.md: it must be running with a
// reachable host) and records the call as capsule activity (docs/api.md).
func (s *Service) target(ctx context.Context, sc scope, id auth.Identity, rawID string) (capsules.Target, error) {
	team, err := sc.team(id)
	if err != nil {
		return capsules.Target{}, err
	}
	return s.res.ResolveActive(ctx, team, rawID)
}

// tagRe is docs/api.md rule of client-chosen tags (1–64 characters); all-digit tags are refused apart.
var tagRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// validTag reports whether tag follows docs/api.md: 1–64 characters [A-Za-z0-9._-] starting with a letter
// or digit, and not all digits (an all-digit selector is a PID).
func validTag(tag string) bool {
	return tagRe.MatchString(tag) && !allDigits(tag)
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// tagMessage is the 400 message of a tag that breaks docs/api.md.
func tagMessage(tag string) string {
	return "invalid tag " + strconv.Quote(tag) + ": use 1-64 characters [A-Za-z0-9._-] starting with a letter or digit, not all digits"
}

// newTag returns prefix followed by 8 random hex digits (proc-…, pty-…).
func newTag(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
