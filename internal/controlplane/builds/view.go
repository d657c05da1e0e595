package builds

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Build is the API view of a build (docs/api.md).
type Build struct {
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	BaseTemplate string            `json:"base_template"`
	Recipe       []string          `json:"recipe"`
	Healthcheck  string            `json:"healthcheck,omitempty"`
	VCPUs        int32             `json:"vcpus"`
	MemoryMB     int32             `json:"memory_mb"`
	SkipPrePost  bool              `json:"skip_pre_post"`
	Status       string            `json:"status"`
	CurrentStep  int32             `json:"current_step"`
	TotalSteps   int32             `json:"total_steps"`
	Logs         []LogEntry        `json:"logs"`
	Error        string            `json:"error,omitempty"`
	CapsuleID    string            `json:"capsule_id,omitempty"`
	SandboxID    string            `json:"sandbox_id,omitempty"`
	HostID       string            `json:"host_id,omitempty"`
	DefaultUser  string            `json:"default_user"`
	DefaultEnv   map[string]string `json:"default_env"`
	CreatedAt    time.Time         `json:"created_at"`
	StartedAt    *time.Time        `json:"started_at,omitempty"`
	CompletedAt  *time.Time        `json:"completed_at,omitempty"`
}

// LogEntry is one finished step of a build (docs/api.md).
type LogEntry struct {
	Step      int    `json:"step"`
	Phase     string `json:"phase"`
	Cmd       string `json:"cmd"`
	Stdout    string `json:"stdout"`
	Stderr    string `json:"stderr"`
	Exit      int    `json:"exit"`
	OK        bool   `json:"ok"`
	ElapsedMS int64  `json:"elapsed_ms"`
}

func buildID(u uuid.UUID) string { return ids.Build.Format(u) }

// view returns the API view of b.
func view(b db.Build) Build {
	v := Build{
		ID: buildID(b.ID), Name: b.Name, BaseTemplate: b.BaseTemplate, Recipe: b.Recipe, VCPUs: b.VCPUs,
		MemoryMB: b.MemoryMB, SkipPrePost: b.SkipPrePost, Status: b.Status, CurrentStep: b.CurrentStep,
		TotalSteps: b.TotalSteps, DefaultEnv: b.DefaultEnv, CreatedAt: b.CreatedAt.UTC(),
		StartedAt: utc(b.StartedAt), CompletedAt: utc(b.CompletedAt), Logs: []LogEntry{},
	}
	if b.Healthcheck != nil {
		v.Healthcheck = *b.Healthcheck
	}
	if b.Error != nil {
		v.Error = *b.Error
	}
	if b.CapsuleID != nil {
		v.CapsuleID = ids.Capsule.Format(*b.CapsuleID)
		v.SandboxID = v.CapsuleID
	}
	if b.HostID != nil {
		v.HostID = ids.Host.Format(*b.HostID)
	}
	if b.DefaultUser != nil {
		v.DefaultUser = *b.DefaultUser
	}
	if v.DefaultEnv == nil {
		v.DefaultEnv = map[string]string{}
	}
	_ = json.Unmarshal(b.Logs, &v.Logs)
	if v.Logs == nil {
		v.Logs = []LogEntry{}
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
