package fleet

import (
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Host is the API's host object (docs/api.md).
type Host struct {
	ID               string     `json:"id"`
	Type             string     `json:"type"`
	TeamID           string     `json:"team_id,omitempty"`
	TeamName         string     `json:"team_name,omitempty"`
	Provider         string     `json:"provider,omitempty"`
	AvailabilityZone string     `json:"availability_zone,omitempty"`
	Arch             string     `json:"arch,omitempty"`
	CPUCores         int32      `json:"cpu_cores,omitempty"`
	MemoryMB         int32      `json:"memory_mb,omitempty"`
	DiskGB           int32      `json:"disk_gb,omitempty"`
	Address          string     `json:"address,omitempty"`
	Status           string     `json:"status"`
	LastHeartbeatAt  *time.Time `json:"last_heartbeat_at,omitempty"`
	Tags             []string   `json:"tags"`
	CreatedBy        string     `json:"created_by,omitempty"`
	CreatedAt        time.Time  `json:"created_at"`
	UpdatedAt        time.Time  `json:"updated_at"`
}

// HostWithToken is the answer of host creation and of a new registration token.
type HostWithToken struct {
	Host              Host   `json:"host"`
	RegistrationToken string `json:"registration_token"`
}

// Credentials are what an agent receives on registration and on every refresh (docs/api.md): its host, a host
// JWT (7 d), a refresh token (60 d, single use), its mTLS server certificate and key (7 d) and the
// internal CA certificate, all PEM.
type Credentials struct {
	Host         Host   `json:"host"`
	Token        string `json:"token"`
	RefreshToken string `json:"refresh_token"`
	CertPEM      string `json:"cert_pem"`
	KeyPEM       string `json:"key_pem"`
	CACertPEM    string `json:"ca_cert_pem"`
}

// DeletePreview is what deleting a host would destroy.
type DeletePreview struct {
	Host       Host     `json:"host"`
	CapsuleIDs []string `json:"capsule_ids"`
	SandboxIDs []string `json:"sandbox_ids"`
}

// apiTime is a time as the API writes it: UTC, whole seconds.
func apiTime(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }

// hostJSON converts a host row; teamName is set in admin views only.
func hostJSON(h db.Host, teamName *string) Host {
	out := Host{
		ID:               ids.Host.Format(h.ID),
		Type:             h.Type,
		TeamID:           formatOpt(ids.Team, h.TeamID),
		Provider:         deref(h.Provider),
		AvailabilityZone: deref(h.AvailabilityZone),
		Arch:             deref(h.Arch),
		CPUCores:         deref(h.CPUCores),
		MemoryMB:         deref(h.MemoryMB),
		DiskGB:           deref(h.DiskGB),
		Address:          deref(h.Address),
		Status:           h.Status,
		Tags:             h.Tags,
		CreatedBy:        formatOpt(ids.User, h.CreatedBy),
		CreatedAt:        apiTime(h.CreatedAt),
		UpdatedAt:        apiTime(h.UpdatedAt),
		TeamName:         deref(teamName),
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if h.LastHeartbeatAt != nil {
		t := apiTime(*h.LastHeartbeatAt)
		out.LastHeartbeatAt = &t
	}
	return out
}

func formatOpt(p ids.Prefix, u *uuid.UUID) string {
	if u == nil {
		return ""
	}
	return p.Format(*u)
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
