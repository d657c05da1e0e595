package capsules

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// template is a snapshot template on disk, in
// <data>/templates/<team>/<id>/{template.json,snapshot/}: a paused capsule's
// snapshot plus what a new capsule needs to restore it.
type template struct {
	TeamID      string            `json:"team_id,omitempty"`
	ID          string            `json:"id"`
	FromSandbox string            `json:"from_sandbox"`
	Image       runtime.Image     `json:"image"`
	Envd        string            `json:"envd"`
	VCPUs       int               `json:"vcpus"`
	MemoryMB    int               `json:"memory_mb"`
	DiskMB      int               `json:"disk_mb"`
	DefaultUser string            `json:"default_user,omitempty"`
	DefaultEnv  map[string]string `json:"default_env,omitempty"`
	EnvdToken   string            `json:"envd_token,omitempty"` // the token the snapshot's envd holds; proves a change at restore
	SizeBytes   int64             `json:"size_bytes"`
	CreatedAt   time.Time         `json:"created_at"`
}

func (l layout) templateFile(team, id string) string {
	return filepath.Join(l.template(team, id), "template.json")
}
func (l layout) templateSnapshot(team, id string) string {
	return filepath.Join(l.template(team, id), "snapshot")
}

// loadTemplate reads a snapshot template, or returns ErrTemplateGone.
func (a *Agent) loadTemplate(team, id string) (*template, error) {
	if !validName(id) || (team != "" && !validName(team)) {
		return nil, fmt.Errorf("%w: bad template or team id", ErrInvalid)
	}
	var t template
	err := readJSON(a.dirs.templateFile(team, id), &t)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrTemplateGone, id)
	}
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// validName accepts ids safe to use as one path element.
func validName(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Snapshot turns a capsule into a template: it pauses the capsule if it
// runs and links its snapshot (memory, processes, file changes) into the
// template directory. The capsule stays paused and can be resumed.
func (a *Agent) Snapshot(ctx context.Context, id, teamID, templateID string) (int64, error) {
	if !validName(templateID) || (teamID != "" && !validName(teamID)) {
		return 0, fmt.Errorf("%w: bad template or team id", ErrInvalid)
	}
	e, err := a.lookup(id)
	if err != nil {
		return 0, err
	}
	e.op.Lock()
	defer e.op.Unlock()
	dst := a.dirs.template(teamID, templateID)
	if _, err := os.Stat(dst); err == nil {
		return 0, fmt.Errorf("%w: template %s", ErrExists, templateID)
	}
	if a.snapshotRec(e).Status == StatusRunning {
		if err := a.pauseLocked(ctx, e); err != nil {
			return 0, err
		}
	}
	r := a.snapshotRec(e)
	if r.Status != StatusPaused {
		return 0, fmt.Errorf("%w: sandbox %s is %s", ErrState, id, r.Status)
	}
	tmp := dst + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return 0, err
	}
	size, err := linkTree(a.dirs.snapshot(id), filepath.Join(tmp, "snapshot"))
	if err != nil {
		_ = os.RemoveAll(tmp)
		return 0, fmt.Errorf("copy snapshot: %w", err)
	}
	t := template{
		TeamID: teamID, ID: templateID, FromSandbox: id, Image: r.Image, Envd: r.Envd,
		VCPUs: r.VCPUs, MemoryMB: r.MemoryMB, DiskMB: r.DiskMB,
		DefaultUser: r.DefaultUser, DefaultEnv: r.DefaultEnv, EnvdToken: r.EnvdToken, SizeBytes: size, CreatedAt: time.Now().UTC(),
	}
	if err := writeJSON(filepath.Join(tmp, "template.json"), t); err != nil {
		_ = os.RemoveAll(tmp)
		return 0, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.RemoveAll(tmp)
		return 0, err
	}
	return size, nil
}

// DeleteTemplate removes a snapshot template's files from this host.
// Capsules restored from it are unaffected: a restore only reads it.
func (a *Agent) DeleteTemplate(_ context.Context, teamID, templateID string) error {
	if !validName(templateID) || (teamID != "" && !validName(teamID)) {
		return fmt.Errorf("%w: bad template or team id", ErrInvalid)
	}
	dir := a.dirs.template(teamID, templateID)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrTemplateGone, templateID)
	}
	// Its pool's members came from these files: gone with them.
	a.dropPool(teamID, templateID)
	return os.RemoveAll(dir)
}

// linkTree hard-links every regular file of src into dst (copying when
// links cannot cross filesystems) and returns the bytes it holds. Snapshot
// files are written once and never modified, so sharing inodes is safe.
func linkTree(src, dst string) (int64, error) {
	var total int64
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += info.Size()
		if err := os.Link(p, target); err == nil {
			return nil
		} else if !errors.Is(err, syscall.EXDEV) {
			return err
		}
		return copyFile(p, target)
	})
	return total, err
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Flatten writes a running capsule's root filesystem (its image plus every
// file change) as an image template that later capsules boot fresh from,
// then destroys the capsule: processes and memory are not kept.
func (a *Agent) Flatten(ctx context.Context, id, teamID, templateID string) (int64, error) {
	if !validName(templateID) || (teamID != "" && !validName(teamID)) {
		return 0, fmt.Errorf("%w: bad template or team id", ErrInvalid)
	}
	fl, ok := a.rt.(runtime.Flattener)
	if !ok {
		return 0, fmt.Errorf("%w: this runtime cannot flatten a root filesystem", ErrState)
	}
	e, err := a.lookup(id)
	if err != nil {
		return 0, err
	}
	e.op.Lock()
	defer e.op.Unlock()
	r := a.snapshotRec(e)
	if r.Status != StatusRunning {
		return 0, fmt.Errorf("%w: sandbox %s is %s", ErrState, id, r.Status)
	}
	dst := a.dirs.template(teamID, templateID)
	if exists(dst) {
		return 0, fmt.Errorf("%w: template %s", ErrExists, templateID)
	}
	tmp := dst + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return 0, err
	}
	// Flush what programs wrote into the capsule's page cache first.
	if c, _, done, err := a.Envd(ctx, id); err == nil {
		_ = syncFS(ctx, c)
		done()
	}
	img, err := fl.Flatten(ctx, r.rid(), filepath.Join(tmp, "rootfs"))
	if err != nil {
		_ = os.RemoveAll(tmp)
		return 0, fmt.Errorf("flatten %s: %w", id, err)
	}
	size, err := dirSize(img.Path)
	if err != nil {
		_ = os.RemoveAll(tmp)
		return 0, err
	}
	img.Path = filepath.Join(dst, "rootfs")
	t := imageTemplate{
		TeamID: teamID, ID: templateID, FromSandbox: id, Image: img,
		VCPUs: r.VCPUs, MemoryMB: r.MemoryMB, DiskMB: r.DiskMB,
		DefaultUser: r.DefaultUser, DefaultEnv: r.DefaultEnv, SizeBytes: size, CreatedAt: time.Now().UTC(),
	}
	if err := writeJSON(filepath.Join(tmp, "image.json"), t); err != nil {
		_ = os.RemoveAll(tmp)
		return 0, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.RemoveAll(tmp)
		return 0, err
	}
	if err := a.discard(ctx, e); err != nil {
		a.log.Warn("flattened capsule not fully removed", "capsule_id", id, "error", err)
	}
	return size, nil
}

// imageTemplate is a flattened template: a standalone image capsules boot
// from, in <data>/templates/<team>/<id>/{image.json,rootfs/}.
type imageTemplate = template

func (l layout) imageTemplateFile(team, id string) string {
	return filepath.Join(l.template(team, id), "image.json")
}

// loadImageTemplate reads a flattened template, or returns ErrTemplateGone.
func (a *Agent) loadImageTemplate(team, id string) (*imageTemplate, error) {
	var t imageTemplate
	err := readJSON(a.dirs.imageTemplateFile(team, id), &t)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrTemplateGone, id)
	}
	if err != nil {
		return nil, err
	}
	return &t, nil
}

func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}
