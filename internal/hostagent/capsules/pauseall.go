package capsules

import (
	"context"
	"errors"
	"fmt"
)

// PauseAll pauses every running capsule. The agent calls it when it lost
// the control plane (docs/api.md of the API contract): capsules must not keep
// running unsupervised. A capsule busy with another operation is paused
// once that ends. Paused ids are reported in List's autoPaused, like
// inactivity pauses, so the control plane learns the host paused them. A
// capsule that fails to pause keeps running; the errors are joined.
func (a *Agent) PauseAll(ctx context.Context) error {
	a.mu.Lock()
	var running []*entry
	for _, e := range a.capsules {
		if e.rec.Status == StatusRunning {
			running = append(running, e)
		}
	}
	a.mu.Unlock()
	var errs []error
	for _, e := range running {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		id, paused, err := a.pauseIfRunning(ctx, e)
		if err != nil {
			errs = append(errs, fmt.Errorf("pause %s: %w", id, err))
			continue
		}
		if paused {
			a.log.Info("paused capsule: control plane lost", "capsule_id", id)
			a.mu.Lock()
			a.autoPaused = append(a.autoPaused, id)
			a.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// pauseIfRunning pauses e unless it stopped running (or was destroyed)
// while PauseAll waited for its lock.
func (a *Agent) pauseIfRunning(ctx context.Context, e *entry) (id string, paused bool, err error) {
	e.op.Lock()
	defer e.op.Unlock()
	a.mu.Lock()
	id = e.rec.ID
	live := a.capsules[id] == e && e.rec.Status == StatusRunning
	a.mu.Unlock()
	if !live {
		return id, false, nil
	}
	if err := a.pauseLocked(ctx, e); err != nil {
		return id, false, err
	}
	return id, true, nil
}
