package capsules

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// reconcile rebuilds the agent's view after a start: every recorded capsule
// ends in a consistent state — running (its runtime container is alive),
// paused (its snapshot is complete) or gone — and runtime containers and
// networks nobody records are removed.
func (a *Agent) reconcile(ctx context.Context) error {
	recs, err := a.loadRecords()
	if err != nil {
		return err
	}
	alive, err := a.rt.List(ctx)
	if err != nil {
		return err
	}
	for _, r := range recs {
		e := &entry{rec: r}
		a.capsules[r.ID] = e
		running := slices.Contains(alive, r.rid())
		// Used snapshots whose background removal a crash cut short.
		if old, _ := filepath.Glob(a.dirs.snapshot(r.ID) + ".old-*"); len(old) > 0 {
			for _, o := range old {
				_ = os.RemoveAll(o)
			}
		}
		if r.Status == StatusPausing && !running && !exists(a.dirs.snapshot(r.ID)) && checkpointWritten(a.dirs.snapshotTmp(r.ID)) {
			// The agent died between the checkpoint and the rename: the
			// container is gone, so what it wrote is all there is. Keep it.
			if err := os.Rename(a.dirs.snapshotTmp(r.ID), a.dirs.snapshot(r.ID)); err != nil {
				a.log.Error("keep snapshot of interrupted pause", "capsule_id", r.ID, "error", err)
			}
		}
		snap := exists(a.dirs.snapshot(r.ID))
		log := a.log.With("id", r.ID, "recorded", r.Status, "container_alive", running, "snapshot", snap)
		switch {
		case r.Status == StatusRunning && running:
			// Still running: nothing to do.
		case r.Status == StatusPaused && snap,
			r.Status == StatusPausing && snap,
			r.Status == StatusRunning && snap && !running, // paused, record not yet on disk
			r.Status == StatusResuming && snap && !running:
			// The snapshot is complete; whatever was in flight is undone.
			log.Info("capsule is paused")
			// Also when the runtime no longer lists it as alive: a sandbox whose checkpoint the crash
			// interrupted may still be exiting, and would block the next restore under this id.
			_ = a.rt.Destroy(ctx, r.rid())
			_ = a.net.Teardown(ctx, r.rid())
			_ = os.RemoveAll(a.dirs.snapshotTmp(r.ID))
			_ = a.setStatus(e, StatusPaused, func(r *record) { r.HostIP = "" })
		case (r.Status == StatusPausing || r.Status == StatusResuming) && running:
			// Died mid-pause, or mid-resume after the restore: the container
			// may run; if envd answers, make it whole again.
			log.Info("capsule may be running; re-initialising envd")
			ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
			envdVer, err := a.initEnvd(ictx, r, r.EnvdToken)
			cancel()
			if err != nil {
				if r.Status == StatusPausing && checkpointWritten(a.dirs.snapshotTmp(r.ID)) {
					// The checkpoint ran and the sandbox is gone, though
					// the runtime still lists it: keep what it saved.
					log.Warn("envd does not answer; keeping the interrupted pause's snapshot", "error", err)
					_ = a.rt.Destroy(ctx, r.rid())
					_ = a.net.Teardown(ctx, r.rid())
					if err := os.Rename(a.dirs.snapshotTmp(r.ID), a.dirs.snapshot(r.ID)); err == nil {
						_ = a.setStatus(e, StatusPaused, func(r *record) { r.HostIP = "" })
						continue
					}
				}
				log.Error("capsule lost: envd does not answer", "error", err)
				_ = a.discard(ctx, e)
				continue
			}
			_ = os.RemoveAll(a.dirs.snapshotTmp(r.ID))
			_ = os.RemoveAll(a.dirs.snapshot(r.ID))
			_ = a.setStatus(e, StatusRunning, func(r *record) { r.LastActiveAt, r.EnvdVersion = time.Now().UTC(), envdVer })
		default:
			// Creating (never finished), or running without a container
			// (e.g. the host rebooted): nothing can be recovered.
			log.Warn("discarding capsule that cannot be recovered")
			_ = a.discard(ctx, e)
		}
	}
	byRID := map[string]*entry{}
	for _, e := range a.capsules {
		byRID[e.rec.rid()] = e
	}
	for _, id := range alive {
		if _, ok := byRID[id]; !ok {
			a.log.Warn("removing runtime container nobody records", "capsule_id", id)
			if err := a.rt.Destroy(ctx, id); err != nil {
				a.log.Error("remove leftover container", "capsule_id", id, "error", err)
			}
		}
	}
	// Template builds interrupted by a crash.
	tmpls, _ := os.ReadDir(a.dirs.templates())
	for _, team := range tmpls {
		dir := a.dirs.templates() + "/" + team.Name()
		ents, _ := os.ReadDir(dir)
		for _, t := range ents {
			if len(t.Name()) > 4 && t.Name()[len(t.Name())-4:] == ".tmp" {
				_ = os.RemoveAll(dir + "/" + t.Name())
			}
		}
	}
	// Warm pool members of an earlier agent process: never kept (pool.go).
	_ = os.RemoveAll(a.dirs.pool())
	// Snapshots of forks a crash interrupted.
	_ = os.RemoveAll(a.dirs.forks())
	return a.net.Cleanup(ctx, func(id string) bool {
		e, ok := byRID[id]
		return ok && e.rec.Status == StatusRunning
	})
}

// checkpointWritten reports whether dir holds a non-empty snapshot.
func checkpointWritten(dir string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.Size() > 0 {
			return true
		}
	}
	return false
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}
