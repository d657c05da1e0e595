package capsules

import (
	"context"
	"time"
)

// idleLoop pauses capsules whose inactivity timeout passed, destroying
// those that fail to pause, and remembers them for ListSandboxes.
func (a *Agent) idleLoop() {
	defer a.bg.Done()
	t := time.NewTicker(a.cfg.IdleCheck)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
			for _, e := range a.idle(time.Now()) {
				a.autoPause(e)
			}
		}
	}
}

// idle returns running capsules with no open calls whose timeout passed.
func (a *Agent) idle(now time.Time) []*entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []*entry
	for _, e := range a.capsules {
		r := e.rec
		if r.Status == StatusRunning && r.TimeoutSec > 0 && e.busy == 0 &&
			now.Sub(r.LastActiveAt) >= time.Duration(r.TimeoutSec)*time.Second {
			out = append(out, e)
		}
	}
	return out
}

func (a *Agent) autoPause(e *entry) {
	if !e.op.TryLock() {
		return // an operation is in progress: that is activity
	}
	defer e.op.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := a.snapshotRec(e)
	// Re-check under the lock: activity may have happened meanwhile.
	if r.Status != StatusRunning || time.Since(r.LastActiveAt) < time.Duration(r.TimeoutSec)*time.Second {
		return
	}
	a.log.Info("pausing idle capsule", "capsule_id", r.ID, "timeout_sec", r.TimeoutSec)
	if err := a.pauseLocked(ctx, e); err != nil {
		a.log.Error("auto-pause failed; destroying capsule", "capsule_id", r.ID, "error", err)
		_ = a.discard(ctx, e)
	}
	a.mu.Lock()
	a.autoPaused = append(a.autoPaused, r.ID)
	a.mu.Unlock()
}
