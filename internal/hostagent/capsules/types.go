// Package capsules is the host agent's core: it owns the capsules on this
// machine — their records on disk, networks, runtime state, snapshots and
// templates — and keeps them consistent across pause/resume, inactivity
// and agent restarts. The Connect API (internal/hostagent/rpc) is a thin layer
// over it.
package capsules

import (
	"time"

	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// Errors the agent returns (wrapped): the error kinds of the runtime package,
// under the names the agent's callers know, and ErrTemplateGone, a not found.
var (
	ErrNotFound     = runtime.ErrNotFound
	ErrExists       = runtime.ErrExists
	ErrInvalid      = runtime.ErrInvalid
	ErrState        = runtime.ErrState
	ErrTemplateGone = runtime.NewError(runtime.ErrNotFound, "template not found")
)

// Status of a capsule on this host.
type Status string

const (
	StatusCreating Status = "creating"
	StatusRunning  Status = "running"
	StatusPausing  Status = "pausing"
	StatusPaused   Status = "paused"
	StatusResuming Status = "resuming"
)

// CreateParams are what CreateSandbox asks for.
type CreateParams struct {
	ID            string
	VCPUs         int
	MemoryMB      int
	TimeoutSec    int
	DiskMB        int
	TeamID        string
	TemplateID    string // image recipe name ("minimal", "base") or a snapshot template id
	DefaultUser   string
	DefaultEnv    map[string]string
	AllowInternet bool
	// EnvdAccessToken is given to envd in /init and sent on the agent's
	// own envd calls; empty: the agent makes one (docs/security.md).
	EnvdAccessToken string
}

// ResumeParams are what ResumeSandbox asks for.
type ResumeParams struct {
	ID          string
	TimeoutSec  int
	DefaultUser string
	DefaultEnv  map[string]string
	// EnvdAccessToken replaces the capsule's envd token when set.
	EnvdAccessToken string
}

// Info describes one capsule.
type Info struct {
	ID            string
	Status        Status
	TeamID        string
	TemplateID    string
	VCPUs         int
	MemoryMB      int
	DiskMB        int
	TimeoutSec    int
	DefaultUser   string
	DefaultEnv    map[string]string
	AllowInternet bool
	HostIP        string // capsule address reachable from this host; empty when paused
	CreatedAt     time.Time
	LastActiveAt  time.Time
	// EnvdAccessToken is the token envd requires (docs/security.md); never
	// sent back over the agent's API.
	EnvdAccessToken string
	// Metadata holds the capsule's runtime versions (docs/api.md):
	// kernel_version, agent_version, envd_version (once envd answered) and
	// the backend's runsc_version or firecracker_version, plus image_id.
	Metadata map[string]string
}

// MetricPoint is one sample of a capsule's resource use.
type MetricPoint struct {
	At        time.Time
	CPUPct    float64
	MemBytes  uint64
	DiskBytes uint64
}

// MetricsRange selects a tier of the metrics ring buffers.
type MetricsRange int

const (
	Range10m MetricsRange = iota // every sample (Config.MetricsEvery, 500 ms) of the last 10 min
	Range2h                      // 30 s averages over 2 h
	Range24h                     // 5 min averages over 24 h
)
