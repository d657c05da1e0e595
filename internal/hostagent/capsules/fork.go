package capsules

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// MaxForks bounds the copies one fork makes.
const MaxForks = 16

// ForkTarget is one copy a fork makes: its capsule id and envd access
// token (empty: the agent makes one).
type ForkTarget struct {
	ID              string
	EnvdAccessToken string
}

func (l layout) forks() string { return filepath.Join(l.root, "forks") }

// Fork copies a running capsule into new running capsules that continue
// from its memory, processes and files at this moment (docs/agent.md,
// "Fork"): envd is quiesced, the runtime checkpoints the capsule while it
// keeps running, and every target is restored from that snapshot with its
// own id, network and token (sent in /init). The source is stopped only
// for the checkpoint. All targets are made or none.
func (a *Agent) Fork(ctx context.Context, id string, targets []ForkTarget) ([]Info, error) {
	if len(targets) < 1 || len(targets) > MaxForks {
		return nil, fmt.Errorf("%w: a fork makes 1..%d capsules", ErrInvalid, MaxForks)
	}
	seen := map[string]bool{id: true}
	for i, t := range targets {
		if t.ID == "" || seen[t.ID] {
			return nil, fmt.Errorf("%w: fork target ids must be set and distinct", ErrInvalid)
		}
		seen[t.ID] = true
		if t.EnvdAccessToken == "" {
			tok, err := NewEnvdToken()
			if err != nil {
				return nil, err
			}
			targets[i].EnvdAccessToken = tok
		}
	}
	cp, ok := a.rt.(runtime.Checkpointer)
	if !ok {
		return nil, fmt.Errorf("%w: this runtime cannot checkpoint a running capsule", ErrState)
	}
	src, err := a.lookup(id)
	if err != nil {
		return nil, err
	}
	// The targets exist (creating) from here, so their ids are taken.
	entries := make([]*entry, len(targets))
	a.mu.Lock()
	for _, t := range targets {
		if _, ok := a.capsules[t.ID]; ok {
			a.mu.Unlock()
			return nil, fmt.Errorf("%w: %s", ErrExists, t.ID)
		}
	}
	now := time.Now().UTC()
	for i, t := range targets {
		e := &entry{rec: &record{ID: t.ID, Status: StatusCreating, EnvdToken: t.EnvdAccessToken, CreatedAt: now, LastActiveAt: now}}
		e.op.Lock()
		a.capsules[t.ID] = e
		entries[i] = e
	}
	a.mu.Unlock()
	bg := context.WithoutCancel(ctx)
	failAll := func(err error) ([]Info, error) {
		for _, e := range entries {
			_ = a.discard(bg, e)
			e.op.Unlock()
		}
		return nil, err
	}

	snap, from, err := a.checkpointForFork(ctx, src, cp)
	if err != nil {
		return failAll(err)
	}
	defer func() {
		if err := os.RemoveAll(snap); err != nil {
			a.log.Warn("remove fork snapshot", "capsule_id", id, "error", err)
		}
	}()

	errs := make([]error, len(entries))
	var wg sync.WaitGroup
	for i, e := range entries {
		wg.Add(1)
		go func() { // owned by Fork: waited for below
			defer wg.Done()
			errs[i] = a.restoreFork(ctx, e, from, snap)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return failAll(fmt.Errorf("fork %s: %w", id, err))
	}
	out := make([]Info, len(entries))
	for i, e := range entries {
		a.mu.Lock()
		out[i] = a.info(e.rec)
		a.mu.Unlock()
		e.op.Unlock()
	}
	return out, nil
}

// checkpointForFork saves the running source src into a new directory
// under forks/ and returns it with the source's record at that moment.
func (a *Agent) checkpointForFork(ctx context.Context, src *entry, cp runtime.Checkpointer) (string, record, error) {
	src.op.Lock()
	defer src.op.Unlock()
	r := a.snapshotRec(src)
	if r.Status != StatusRunning {
		return "", r, fmt.Errorf("%w: sandbox %s is %s", ErrState, r.ID, r.Status)
	}
	dir := filepath.Join(a.dirs.forks(), fmt.Sprintf("%s-%d", r.ID, time.Now().UnixNano()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", r, err
	}
	c := a.client(&r)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if err := c.PrepareSnapshot(pctx); err != nil {
		a.log.Warn("envd snapshot/prepare failed; forking anyway", "capsule_id", r.ID, "error", err)
	}
	cancel()
	cerr := cp.Checkpoint(ctx, r.rid(), runtime.Snapshot{Dir: dir})
	// Running on either way: undo the quiesce.
	if _, err := a.initEnvd(context.WithoutCancel(ctx), &r, r.EnvdToken); err != nil {
		a.log.Error("capsule did not recover from a fork's checkpoint", "capsule_id", r.ID, "error", err)
	}
	a.touch(src)
	if cerr != nil {
		_ = os.RemoveAll(dir)
		return "", r, fmt.Errorf("checkpoint %s: %w", r.ID, cerr)
	}
	return dir, r, nil
}

// restoreFork makes e a copy of from, restored from snap; the caller holds
// e.op.
func (a *Agent) restoreFork(ctx context.Context, e *entry, from record, snap string) error {
	a.mu.Lock()
	r := e.rec
	r.TeamID, r.TemplateID = from.TeamID, from.TemplateID
	r.VCPUs, r.MemoryMB, r.DiskMB, r.TimeoutSec = from.VCPUs, from.MemoryMB, from.DiskMB, from.TimeoutSec
	r.DefaultUser, r.DefaultEnv, r.AllowInternet = from.DefaultUser, copyEnv(from.DefaultEnv), from.AllowInternet
	r.Image, r.Envd, r.EnvdVersion = from.Image, from.Envd, from.EnvdVersion
	a.mu.Unlock()
	if err := a.setStatus(e, StatusCreating, nil); err != nil {
		return err
	}
	if err := a.attachNetwork(ctx, e); err != nil {
		return err
	}
	rc := a.snapshotRec(e)
	if err := a.writeMetadata(&rc); err != nil {
		return err
	}
	if err := a.rt.Restore(ctx, a.spec(&rc), runtime.Snapshot{Dir: snap}); err != nil {
		return fmt.Errorf("restore %s: %w", rc.ID, err)
	}
	// The copy's envd holds the source's token until this /init.
	envdVer, err := a.initEnvd(ctx, &rc, from.EnvdToken)
	if err != nil {
		return err
	}
	return a.setStatus(e, StatusRunning, func(r *record) {
		r.LastActiveAt, r.EnvdVersion = time.Now().UTC(), envdVer
	})
}
