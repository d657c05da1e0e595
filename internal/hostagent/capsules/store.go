package capsules

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// record is what the agent keeps on disk for each capsule, in
// <data>/capsules/<id>/capsule.json. It is rewritten atomically at every
// status change, so a restarted agent knows what each capsule was doing.
type record struct {
	ID string `json:"id"`
	// RuntimeID names the capsule's runtime container and network when they
	// differ from ID: a capsule handed out by a warm pool keeps the name it
	// was booted under (pool.go). Empty: ID.
	RuntimeID     string            `json:"runtime_id,omitempty"`
	Status        Status            `json:"status"`
	TeamID        string            `json:"team_id,omitempty"`
	TemplateID    string            `json:"template_id,omitempty"`
	VCPUs         int               `json:"vcpus"`
	MemoryMB      int               `json:"memory_mb"`
	DiskMB        int               `json:"disk_mb"`
	TimeoutSec    int               `json:"timeout_sec"`
	DefaultUser   string            `json:"default_user,omitempty"`
	DefaultEnv    map[string]string `json:"default_env,omitempty"`
	AllowInternet bool              `json:"allow_internet"`
	EnvdToken     string            `json:"envd_token,omitempty"` // envd access token (docs/security.md)
	Image         runtime.Image     `json:"image"`
	Envd          string            `json:"envd"`
	EnvdVersion   string            `json:"envd_version,omitempty"` // what envd's /health reported at the last boot or restore
	Network       runtime.Network   `json:"network"`
	HostIP        string            `json:"host_ip,omitempty"`
	CreatedAt     time.Time         `json:"created_at"`
	LastActiveAt  time.Time         `json:"last_active_at"`
}

// rid is the name of r's runtime container and network.
func (r *record) rid() string {
	if r.RuntimeID != "" {
		return r.RuntimeID
	}
	return r.ID
}

// info describes r; the caller holds a.mu or owns r.
func (a *Agent) info(r *record) Info {
	i := Info{
		ID: r.ID, Status: r.Status, TeamID: r.TeamID, TemplateID: r.TemplateID,
		VCPUs: r.VCPUs, MemoryMB: r.MemoryMB, DiskMB: r.DiskMB, TimeoutSec: r.TimeoutSec,
		DefaultUser: r.DefaultUser, DefaultEnv: copyEnv(r.DefaultEnv), AllowInternet: r.AllowInternet,
		CreatedAt: r.CreatedAt, LastActiveAt: r.LastActiveAt, EnvdAccessToken: r.EnvdToken,
		Metadata: a.runtimeMetadata(r),
	}
	if r.Status == StatusRunning {
		i.HostIP = r.HostIP
	}
	return i
}

func copyEnv(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// layout names the agent's directories under the data dir.
type layout struct{ root string }

func (l layout) capsules() string             { return filepath.Join(l.root, "capsules") }
func (l layout) capsule(id string) string     { return filepath.Join(l.capsules(), id) }
func (l layout) recordFile(id string) string  { return filepath.Join(l.capsule(id), "capsule.json") }
func (l layout) metaDir(id string) string     { return filepath.Join(l.capsule(id), "meta") }
func (l layout) snapshot(id string) string    { return filepath.Join(l.capsule(id), "snapshot") }
func (l layout) snapshotTmp(id string) string { return filepath.Join(l.capsule(id), "snapshot.tmp") }
func (l layout) templates() string            { return filepath.Join(l.root, "templates") }
func (l layout) template(team, id string) string {
	if team == "" {
		team = "_"
	}
	return filepath.Join(l.templates(), team, id)
}
func (l layout) envd() string { return filepath.Join(l.root, "envd") }

// writeJSON writes v to path atomically and durably (temp file, fsync,
// rename).
func writeJSON(path string, v any) error { return writeJSONSync(path, v, true) }

// writeJSONSync is writeJSON; without sync the data survives an agent
// crash (it is in the page cache) but not a host crash.
func writeJSONSync(path string, v any, sync bool) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func (a *Agent) saveRecord(r *record) error {
	if err := os.MkdirAll(a.dirs.capsule(r.ID), 0o700); err != nil {
		return err
	}
	// Not fsynced on the hot path: a record written survives an agent crash
	// (it is in the page cache), and the kernel writes it back within
	// seconds, like the snapshot files runsc writes.
	if err := writeJSONSync(a.dirs.recordFile(r.ID), r, false); err != nil {
		return fmt.Errorf("save capsule %s: %w", r.ID, err)
	}
	return nil
}

// loadRecords reads every capsule record; unreadable ones are reported and
// skipped (their directories are left for an operator).
func (a *Agent) loadRecords() ([]*record, error) {
	ents, err := os.ReadDir(a.dirs.capsules())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*record
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		var r record
		if err := readJSON(a.dirs.recordFile(e.Name()), &r); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				// A create that died before its first save: nothing to keep.
				_ = os.RemoveAll(a.dirs.capsule(e.Name()))
				continue
			}
			a.log.Error("unreadable capsule record", "capsule_id", e.Name(), "error", err)
			continue
		}
		out = append(out, &r)
	}
	return out, nil
}

// metadata is what envd reads from /.wrenn/meta/metadata.json at /init.
type metadata struct {
	SandboxID  string `json:"sandbox_id"`
	TemplateID string `json:"template_id"`
}

func (a *Agent) writeMetadata(r *record) error {
	dir := a.dirs.metaDir(r.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return writeJSONSync(filepath.Join(dir, "metadata.json"), metadata{SandboxID: r.ID, TemplateID: r.TemplateID}, false)
}
