package capsules

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/process"
	"github.com/wrenn/wrenn/internal/hostagent/envdclient"
	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// defaultTemplate is the image recipe used when a create names none.
const defaultTemplate = "base"

// Create boots a new capsule from an image recipe or restores it from a
// snapshot template, then initialises envd with the capsule's defaults. A
// failed create leaves nothing behind.
func (a *Agent) Create(ctx context.Context, p CreateParams) (Info, error) {
	if p.ID == "" {
		return Info{}, fmt.Errorf("%w: sandbox id is required", ErrInvalid)
	}
	if p.TemplateID == "" {
		p.TemplateID = defaultTemplate
	}
	if p.EnvdAccessToken == "" {
		tok, err := NewEnvdToken()
		if err != nil {
			return Info{}, err
		}
		p.EnvdAccessToken = tok
	}
	now := time.Now().UTC()
	rec := &record{
		ID: p.ID, Status: StatusCreating, TeamID: p.TeamID, TemplateID: p.TemplateID,
		VCPUs: p.VCPUs, MemoryMB: p.MemoryMB, DiskMB: p.DiskMB, TimeoutSec: p.TimeoutSec,
		DefaultUser: p.DefaultUser, DefaultEnv: copyEnv(p.DefaultEnv), AllowInternet: p.AllowInternet,
		Envd: a.envd, EnvdToken: p.EnvdAccessToken, CreatedAt: now, LastActiveAt: now,
	}
	e := &entry{rec: rec}
	e.op.Lock()
	defer e.op.Unlock()
	a.mu.Lock()
	if _, ok := a.capsules[p.ID]; ok {
		a.mu.Unlock()
		return Info{}, fmt.Errorf("%w: %s", ErrExists, p.ID)
	}
	a.capsules[p.ID] = e
	a.mu.Unlock()

	info, err := a.create(ctx, e, p)
	if err != nil {
		a.discard(context.WithoutCancel(ctx), e)
		return Info{}, err
	}
	return info, nil
}

func (a *Agent) create(ctx context.Context, e *entry, p CreateParams) (Info, error) {
	if m := a.takePooled(p); m != nil {
		info, err := a.adoptPooled(ctx, e, m)
		if err == nil {
			return info, nil
		}
		a.log.Warn("warm pool: hand-out failed; creating the capsule afresh", "capsule_id", p.ID, "member", m.rec.RuntimeID, "error", err)
	}
	tpl, err := a.loadTemplate(p.TeamID, p.TemplateID)
	if errors.Is(err, ErrTemplateGone) {
		// A flattened template boots fresh from its image.
		if it, ierr := a.loadImageTemplate(p.TeamID, p.TemplateID); ierr == nil {
			a.adoptTemplateDefaults(e, it)
			err = nil
		} else if img, ierr := a.cfg.Images.Ensure(ctx, p.TemplateID); ierr == nil {
			a.mu.Lock()
			e.rec.Image = img
			a.mu.Unlock()
			err = nil
		} else {
			a.log.Debug("no such template", "template", p.TemplateID, "image_error", ierr)
		}
	} else if err == nil {
		a.adoptTemplateDefaults(e, tpl)
	}
	if err != nil {
		return Info{}, err
	}
	a.mu.Lock()
	applyDefaults(e.rec)
	a.mu.Unlock()
	if err := a.setStatus(e, StatusCreating, nil); err != nil {
		return Info{}, err
	}
	if err := a.writeMetadata(e.rec); err != nil {
		return Info{}, err
	}
	if err := a.attachNetwork(ctx, e); err != nil {
		return Info{}, err
	}
	r := a.snapshotRec(e)
	spec := a.spec(&r)
	prior := "" // a fresh envd has no token
	if tpl != nil {
		prior = tpl.EnvdToken // the restored envd still holds the template's
		err = a.rt.Restore(ctx, spec, runtime.Snapshot{Dir: a.dirs.templateSnapshot(tpl.TeamID, tpl.ID)})
	} else {
		err = a.rt.Create(ctx, spec)
	}
	if err != nil {
		return Info{}, fmt.Errorf("start capsule %s: %w", r.ID, err)
	}
	envdVer, err := a.initEnvd(ctx, &r, prior)
	if err != nil {
		return Info{}, err
	}
	if err := a.setStatus(e, StatusRunning, func(r *record) {
		r.LastActiveAt, r.EnvdVersion = time.Now().UTC(), envdVer
	}); err != nil {
		return Info{}, err
	}
	return a.Info(r.ID)
}

// adoptTemplateDefaults takes image, envd and defaults from a template
// where the create request left them unset.
func (a *Agent) adoptTemplateDefaults(e *entry, t *template) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e.rec.Image = t.Image
	if t.Envd != "" {
		e.rec.Envd = t.Envd
	}
	if e.rec.DefaultUser == "" {
		e.rec.DefaultUser = t.DefaultUser
	}
	e.rec.DefaultEnv = mergeEnv(t.DefaultEnv, e.rec.DefaultEnv)
	if e.rec.VCPUs == 0 {
		e.rec.VCPUs = t.VCPUs
	}
	if e.rec.MemoryMB == 0 {
		e.rec.MemoryMB = t.MemoryMB
	}
	if e.rec.DiskMB == 0 {
		e.rec.DiskMB = t.DiskMB
	}
}

// applyDefaults fills resource settings nobody chose.
func applyDefaults(r *record) {
	if r.VCPUs <= 0 {
		r.VCPUs = 1
	}
	if r.MemoryMB <= 0 {
		r.MemoryMB = 512
	}
	if r.DiskMB <= 0 {
		r.DiskMB = 2048
	}
}

func mergeEnv(base, over map[string]string) map[string]string {
	if len(base) == 0 {
		return copyEnv(over)
	}
	out := copyEnv(base)
	for k, v := range over {
		out[k] = v
	}
	return out
}

func (a *Agent) spec(r *record) runtime.Spec {
	return runtime.Spec{
		ID: r.rid(), VCPUs: r.VCPUs, MemoryMB: r.MemoryMB, DiskMB: r.DiskMB,
		Image: r.Image, Network: r.Network, MetadataDir: a.dirs.metaDir(r.ID), Envd: r.Envd,
	}
}

// attachNetwork creates the capsule's network and records it, or takes
// back the one kept since its pause.
func (a *Agent) attachNetwork(ctx context.Context, e *entry) error {
	if ip, ok := e.takeKeptNetwork(); ok {
		a.mu.Lock()
		e.rec.HostIP = ip
		a.mu.Unlock()
		return nil
	}
	r := a.snapshotRec(e)
	n, hostIP, err := a.net.Setup(ctx, r.rid(), r.AllowInternet)
	if err != nil {
		return fmt.Errorf("network for %s: %w", r.ID, err)
	}
	a.mu.Lock()
	e.rec.Network, e.rec.HostIP = n, hostIP
	a.mu.Unlock()
	return nil
}

// syncFS runs sync(1) in the capsule so written data reaches its disk.
func syncFS(ctx context.Context, c *envdclient.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := c.Process.Start(ctx, connect.NewRequest(&process.StartRequest{Process: &process.ProcessConfig{Cmd: "sync"}}))
	if err != nil {
		return err
	}
	defer st.Close()
	for st.Receive() {
		if st.Msg().GetEvent().GetEnd() != nil {
			return nil
		}
	}
	return st.Err()
}

// initEnvd waits for envd and applies the capsule's defaults; /init also
// makes envd re-read its identity and restart its port subsystem. It
// returns envd's version, or r's last known one when envd does not tell.
// /init sets envd's token to r's; prior is the token envd holds now (after
// a restore), which proves the change (docs/security.md).
func (a *Agent) initEnvd(ctx context.Context, r *record, prior string) (envdVer string, err error) {
	c := envdclient.New(r.HostIP, envdclient.WithToken(prior))
	wctx, cancel := context.WithTimeout(ctx, a.cfg.ReadyTimeout)
	defer cancel()
	if err := c.WaitHealthy(wctx); err != nil {
		return "", fmt.Errorf("capsule %s: %w", r.ID, err)
	}
	if err := c.Init(wctx, envdclient.Init{EnvVars: r.DefaultEnv, DefaultUser: r.DefaultUser, AccessToken: &r.EnvdToken}); err != nil {
		return "", fmt.Errorf("capsule %s: %w", r.ID, err)
	}
	v, err := envdVersion(wctx, r.HostIP)
	if err != nil || v == "" {
		// Only metadata: the capsule works.
		a.log.Warn("envd version unknown", "capsule_id", r.ID, "error", err)
		return r.EnvdVersion, nil
	}
	return v, nil
}

// discard removes everything a capsule has on this host: runtime state,
// network, files and the in-memory entry. Errors are logged: it runs on
// failure paths and for Destroy, which must not stop half way.
func (a *Agent) discard(ctx context.Context, e *entry) error {
	e.takeKeptNetwork()
	r := a.snapshotRec(e)
	a.stopping(r.ID)
	var errs []error
	if err := a.rt.Destroy(ctx, r.rid()); err != nil {
		errs = append(errs, fmt.Errorf("runtime: %w", err))
	}
	if err := a.net.Teardown(ctx, r.rid()); err != nil {
		errs = append(errs, fmt.Errorf("network: %w", err))
	}
	if err := os.RemoveAll(a.dirs.capsule(r.ID)); err != nil {
		errs = append(errs, err)
	}
	envdclient.CloseIdle()
	a.mu.Lock()
	if a.capsules[r.ID] == e {
		delete(a.capsules, r.ID)
	}
	delete(a.metrics, r.ID)
	a.mu.Unlock()
	err := errors.Join(errs...)
	if err != nil {
		a.log.Error("capsule cleanup incomplete", "capsule_id", r.ID, "error", err)
	}
	return err
}

// Destroy tears a capsule down, running or paused, with its snapshot.
func (a *Agent) Destroy(ctx context.Context, id string) error {
	e, err := a.lookup(id)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	return a.discard(ctx, e)
}

// Pause quiesces envd, saves the capsule (memory, processes, file changes)
// to disk and frees its CPU, memory and network.
func (a *Agent) Pause(ctx context.Context, id string) error {
	e, err := a.lookup(id)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	return a.pauseLocked(ctx, e)
}

func (a *Agent) pauseLocked(ctx context.Context, e *entry) error {
	r := a.snapshotRec(e)
	if r.Status != StatusRunning {
		return fmt.Errorf("%w: sandbox %s is %s", ErrState, r.ID, r.Status)
	}
	a.stopping(r.ID)
	c := a.client(&r)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := c.PrepareSnapshot(pctx)
	cancel()
	if err != nil {
		// A wedged envd must not make a capsule unpausable.
		a.log.Warn("envd snapshot/prepare failed; pausing anyway", "capsule_id", r.ID, "error", err)
	}
	tmp := a.dirs.snapshotTmp(r.ID)
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	if err := a.setStatus(e, StatusPausing, nil); err != nil {
		return err
	}
	if err := a.rt.Pause(ctx, r.rid(), runtime.Snapshot{Dir: tmp}); err != nil {
		_ = os.RemoveAll(tmp)
		// Still running: undo the quiesce.
		if _, ierr := a.initEnvd(context.WithoutCancel(ctx), &r, r.EnvdToken); ierr != nil {
			a.log.Error("capsule did not recover from a failed pause", "capsule_id", r.ID, "error", ierr)
		}
		_ = a.setStatus(e, StatusRunning, nil)
		return fmt.Errorf("pause %s: %w", r.ID, err)
	}
	if err := os.Rename(tmp, a.dirs.snapshot(r.ID)); err != nil {
		return fmt.Errorf("pause %s: %w", r.ID, err)
	}
	// The snapshot is complete: from here a crash leaves a paused capsule.
	if err := a.setStatus(e, StatusPaused, func(r *record) { r.HostIP = "" }); err != nil {
		return err
	}
	// Building a network costs milliseconds, tearing one down tens (veth
	// deletion is slow in the kernel): keep it for a quick resume, release
	// it after the grace period.
	a.keepNetwork(e, r.rid(), r.HostIP)
	envdclient.CloseIdle()
	return nil
}

// Resume restores a paused capsule with a fresh network, then re-inits envd
// with the (possibly new) defaults. On failure the capsule stays paused.
func (a *Agent) Resume(ctx context.Context, p ResumeParams) (Info, error) {
	e, err := a.lookup(p.ID)
	if err != nil {
		return Info{}, err
	}
	e.op.Lock()
	defer e.op.Unlock()
	r := a.snapshotRec(e)
	if r.Status != StatusPaused {
		return Info{}, fmt.Errorf("%w: sandbox %s is %s", ErrState, r.ID, r.Status)
	}
	if err := a.setStatus(e, StatusResuming, func(r *record) {
		if p.TimeoutSec > 0 {
			r.TimeoutSec = p.TimeoutSec
		}
		if p.DefaultUser != "" {
			r.DefaultUser = p.DefaultUser
		}
		if p.DefaultEnv != nil {
			r.DefaultEnv = mergeEnv(r.DefaultEnv, p.DefaultEnv)
		}
	}); err != nil {
		return Info{}, err
	}
	if err := a.resumeLocked(ctx, e, r.EnvdToken, p.EnvdAccessToken); err != nil {
		bg := context.WithoutCancel(ctx)
		_ = a.rt.Destroy(bg, r.rid())
		_ = a.net.Teardown(bg, r.rid())
		// The snapshot's envd still holds the old token.
		_ = a.setStatus(e, StatusPaused, func(rec *record) { rec.HostIP, rec.EnvdToken = "", r.EnvdToken })
		return Info{}, err
	}
	return a.Info(p.ID)
}

// resumeLocked restores e. prior is the token the snapshot's envd holds; a
// non-empty token replaces it.
func (a *Agent) resumeLocked(ctx context.Context, e *entry, prior, token string) error {
	if token != "" && token != prior {
		a.mu.Lock()
		e.rec.EnvdToken = token
		a.mu.Unlock()
	}
	if err := a.attachNetwork(ctx, e); err != nil {
		return err
	}
	if err := a.saveRecord(func() *record { r := a.snapshotRec(e); return &r }()); err != nil {
		return err
	}
	r := a.snapshotRec(e)
	if err := a.writeMetadata(&r); err != nil {
		return err
	}
	if err := a.rt.Restore(ctx, a.spec(&r), runtime.Snapshot{Dir: a.dirs.snapshot(r.ID)}); err != nil {
		return fmt.Errorf("resume %s: %w", r.ID, err)
	}
	envdVer, err := a.initEnvd(ctx, &r, prior)
	if err != nil {
		return err
	}
	// The restored capsule's CPU counter starts anew: no CPU % across the
	// pause. (Not sampled before it is running.)
	a.mu.Lock()
	if s := a.metrics[r.ID]; s != nil {
		s.haveLast = false
	}
	a.mu.Unlock()
	if err := a.setStatus(e, StatusRunning, func(r *record) {
		r.LastActiveAt, r.EnvdVersion = time.Now().UTC(), envdVer
	}); err != nil {
		return err
	}
	// Running again: the pause snapshot is stale now (templates made from
	// it hold their own links to its files). Move it aside at once, so the
	// next pause can write a new one, and delete it after answering.
	old := fmt.Sprintf("%s.old-%d", a.dirs.snapshot(r.ID), time.Now().UnixNano())
	if err := os.Rename(a.dirs.snapshot(r.ID), old); err != nil {
		a.log.Warn("remove used snapshot", "capsule_id", r.ID, "error", err)
		return nil
	}
	a.background(func() {
		if err := os.RemoveAll(old); err != nil {
			a.log.Warn("remove used snapshot", "capsule_id", r.ID, "error", err)
		}
	})
	return nil
}
