package e2bapi

import (
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// sandboxPrefix starts a sandbox id: the capsule id's prefix without its dash.
var sandboxPrefix = strings.TrimSuffix(string(ids.Capsule), "-")

// SandboxID is the E2B form of a capsule id: the capsule id without its dash (cl0k4x… for cl-0k4x…),
// so that {port}-{id}.<domain> parses and the port proxy routes it (docs/e2b.md).
func SandboxID(id uuid.UUID) string {
	return sandboxPrefix + strings.TrimPrefix(ids.Capsule.Format(id), string(ids.Capsule))
}

// capsuleID returns the capsule id (cl-…) of an E2B sandbox id; the cl- form is accepted too.
func capsuleID(raw string) string {
	if rest, ok := strings.CutPrefix(raw, sandboxPrefix); ok && !strings.HasPrefix(rest, "-") {
		return string(ids.Capsule) + rest
	}
	return raw
}

// minEnvdVersion is what a sandbox whose envd has not reported its version yet advertises: the lowest
// version the facade supports (docs/e2b.md).
const minEnvdVersion = "0.4.0"

var semver = regexp.MustCompile(`^\d+\.\d+\.\d+$`)

// envdVersion is the E2B protocol version the capsule's envd reported on /health (the agent passes it
// on in the capsule metadata).
func envdVersion(c db.Capsule) string {
	if v := c.Metadata["envd_version"]; semver.MatchString(v) {
		return v
	}
	return minEnvdVersion
}

// sandbox is E2B's Sandbox schema (create, connect).
type sandbox struct {
	SandboxID          string  `json:"sandboxID"`
	TemplateID         string  `json:"templateID"`
	Alias              string  `json:"alias,omitempty"`
	ClientID           string  `json:"clientID"`
	EnvdVersion        string  `json:"envdVersion"`
	EnvdAccessToken    string  `json:"envdAccessToken,omitempty"`
	TrafficAccessToken *string `json:"trafficAccessToken"`
	Domain             *string `json:"domain"`
}

// lifecycle is E2B's SandboxLifecycle.
type lifecycle struct {
	AutoResume bool   `json:"autoResume"`
	OnTimeout  string `json:"onTimeout"`
}

// listedSandbox is E2B's ListedSandbox schema; detail adds the fields of SandboxDetail.
type listedSandbox struct {
	SandboxID    string            `json:"sandboxID"`
	TemplateID   string            `json:"templateID"`
	Alias        string            `json:"alias,omitempty"`
	ClientID     string            `json:"clientID"`
	StartedAt    time.Time         `json:"startedAt"`
	EndAt        time.Time         `json:"endAt"`
	CPUCount     int32             `json:"cpuCount"`
	MemoryMB     int32             `json:"memoryMB"`
	DiskSizeMB   int32             `json:"diskSizeMB"`
	Metadata     map[string]string `json:"metadata"`
	State        string            `json:"state"`
	EnvdVersion  string            `json:"envdVersion"`
	VolumeMounts []struct{}        `json:"volumeMounts"`
}

type sandboxDetail struct {
	listedSandbox
	EnvdAccessToken     string    `json:"envdAccessToken,omitempty"`
	AllowInternetAccess bool      `json:"allowInternetAccess"`
	Domain              *string   `json:"domain"`
	Lifecycle           lifecycle `json:"lifecycle"`
}

// visible reports whether the facade shows c: E2B knows running and paused sandboxes only; a capsule
// being created or whose host is silent counts as running.
func visible(c db.Capsule) bool {
	switch c.Status {
	case store.CapsuleRunning, store.CapsulePaused, store.CapsulePending, store.CapsuleStarting, store.CapsuleMissing:
		return true
	}
	return false
}

func state(c db.Capsule) string {
	if c.Status == store.CapsulePaused {
		return "paused"
	}
	return "running"
}

// endAt is the end of c's lifetime. A capsule made through /v1 has none (it lives until destroyed);
// it shows now + MaxTimeout, since the schema needs a time.
func endAt(c db.Capsule) time.Time {
	if c.EndAt != nil {
		return c.EndAt.UTC()
	}
	return time.Now().Add(MaxTimeout).UTC().Truncate(time.Second)
}

func startedAt(c db.Capsule) time.Time {
	if c.StartedAt != nil {
		return c.StartedAt.UTC()
	}
	return c.CreatedAt.UTC()
}

func listed(c db.Capsule) listedSandbox {
	meta := map[string]string(c.UserMetadata)
	if meta == nil {
		meta = map[string]string{}
	}
	return listedSandbox{
		SandboxID: SandboxID(c.ID), TemplateID: c.TemplateName, ClientID: clientID,
		StartedAt: startedAt(c), EndAt: endAt(c), CPUCount: c.VCPUs, MemoryMB: c.MemoryMB, DiskSizeMB: c.DiskMB,
		Metadata: meta, State: state(c), EnvdVersion: envdVersion(c), VolumeMounts: []struct{}{},
	}
}

func (s *Service) sandbox(r *http.Request, c db.Capsule) (sandbox, error) {
	tok, err := s.caps.EnvdToken(c)
	if err != nil {
		return sandbox{}, apierr.Internal(err)
	}
	return sandbox{
		SandboxID: SandboxID(c.ID), TemplateID: c.TemplateName, ClientID: clientID,
		EnvdVersion: envdVersion(c), EnvdAccessToken: tok, Domain: s.domainFor(r),
	}, nil
}

func (s *Service) detail(r *http.Request, c db.Capsule) (sandboxDetail, error) {
	tok, err := s.caps.EnvdToken(c)
	if err != nil {
		return sandboxDetail{}, apierr.Internal(err)
	}
	return sandboxDetail{
		listedSandbox: listed(c), EnvdAccessToken: tok, AllowInternetAccess: c.AllowInternet,
		Domain: s.domainFor(r), Lifecycle: lifecycle{OnTimeout: c.OnTimeout},
	}, nil
}

// domainFor is the `domain` of a response to r: the proxy's domain, with the port of r's Host when the
// configured domain has none (wrenn up: localhost → localhost:8080).
func (s *Service) domainFor(r *http.Request) *string {
	if s.domain == "" {
		return nil
	}
	d := s.domain
	if _, _, err := net.SplitHostPort(d); err != nil {
		if _, port, err := net.SplitHostPort(r.Host); err == nil && port != "" {
			d = net.JoinHostPort(d, port)
		}
	}
	return &d
}

// get returns the capsule of sandbox raw of the caller's team: 404 when it is not one E2B would show.
func (s *Service) get(r *http.Request, c caller, raw string) (db.Capsule, error) {
	capsule, err := s.caps.Get(r.Context(), c.team, capsuleID(raw))
	if err != nil {
		if e := apierr.From(err); e.Status == http.StatusBadRequest {
			return db.Capsule{}, apierr.NotFound("sandbox " + raw + " not found")
		}
		return db.Capsule{}, err
	}
	if !visible(capsule) {
		return db.Capsule{}, apierr.NotFound("sandbox " + raw + " not found")
	}
	return capsule, nil
}
