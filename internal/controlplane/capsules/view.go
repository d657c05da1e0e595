package capsules

import (
	"time"

	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Capsule is the capsule object of docs/api.md; SandboxID mirrors ID (docs/api.md).
type Capsule struct {
	ID           string            `json:"id"`
	SandboxID    string            `json:"sandbox_id"`
	Status       string            `json:"status"`
	Template     string            `json:"template"`
	VCPUs        int32             `json:"vcpus"`
	MemoryMB     int32             `json:"memory_mb"`
	TimeoutSec   int32             `json:"timeout_sec"`
	HostID       string            `json:"host_id,omitempty"`
	HostIP       string            `json:"host_ip,omitempty"`
	CreatedAt    time.Time         `json:"created_at"`
	StartedAt    *time.Time        `json:"started_at,omitempty"`
	LastActiveAt *time.Time        `json:"last_active_at,omitempty"`
	LastUpdated  time.Time         `json:"last_updated"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	// Secure: every proxied port needs TrafficAccessToken (docs/security.md).
	Secure bool `json:"secure"`
	// EnvdAccessToken is set by Resolver.View only: responses to the owning team and admins.
	EnvdAccessToken string `json:"envd_access_token,omitempty"`
	// TrafficAccessToken is a secure capsule's, set by Resolver.View only (as EnvdAccessToken).
	TrafficAccessToken string `json:"traffic_access_token,omitempty"`
}

// CapsuleView renders a capsule row as the API object, without secrets (Resolver.View adds them).
func CapsuleView(c db.Capsule) Capsule {
	id := ids.Capsule.Format(c.ID)
	v := Capsule{
		ID:           id,
		SandboxID:    id,
		Status:       c.Status,
		Template:     c.TemplateName,
		VCPUs:        c.VCPUs,
		MemoryMB:     c.MemoryMB,
		TimeoutSec:   c.TimeoutSec,
		CreatedAt:    c.CreatedAt.UTC(),
		StartedAt:    utc(c.StartedAt),
		LastActiveAt: utc(c.LastActiveAt),
		LastUpdated:  c.UpdatedAt.UTC(),
		Secure:       c.Secure,
	}
	if c.HostID != nil {
		v.HostID = ids.Host.Format(*c.HostID)
	}
	if c.HostIP != nil && c.HostIP.IsValid() {
		v.HostIP = c.HostIP.String()
	}
	if len(c.Metadata) > 0 {
		v.Metadata = c.Metadata
	}
	return v
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// Template is the template object of docs/api.md; TeamID only in admin listings.
type Template struct {
	Name        string            `json:"name"`
	Type        string            `json:"type"`
	VCPUs       *int32            `json:"vcpus,omitempty"`
	MemoryMB    *int32            `json:"memory_mb,omitempty"`
	SizeBytes   int64             `json:"size_bytes"`
	CreatedAt   time.Time         `json:"created_at"`
	Platform    bool              `json:"platform"`
	DefaultUser string            `json:"default_user"`
	DefaultEnv  map[string]string `json:"default_env"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	TeamID      string            `json:"team_id,omitempty"`
	Pool        Pool              `json:"pool"`
}

// TemplateView renders a template row; withTeam adds team_id (admin listings).
func TemplateView(t db.Template, withTeam bool) Template {
	v := Template{
		Name:        t.Name,
		Type:        t.Type,
		VCPUs:       t.VCPUs,
		MemoryMB:    t.MemoryMB,
		SizeBytes:   t.SizeBytes,
		CreatedAt:   t.CreatedAt.UTC(),
		Platform:    t.Platform,
		DefaultUser: t.DefaultUser,
		DefaultEnv:  t.DefaultEnv,
	}
	if v.DefaultEnv == nil {
		v.DefaultEnv = map[string]string{}
	}
	if len(t.Metadata) > 0 {
		v.Metadata = t.Metadata
	}
	if withTeam {
		v.TeamID = ids.Team.Format(t.TeamID)
	}
	v.Pool.Size = t.PoolSize
	return v
}
