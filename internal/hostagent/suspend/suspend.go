// Package suspend carries a host agent's running capsules across its restart: with -on-shutdown=pause
// the agent pauses every running capsule when it stops and records their ids in its data directory;
// at its next start it resumes them (with their stored default user and environment) and clears the
// record. The record is rewritten after every pause, so an agent killed half way still resumes what it
// paused.
package suspend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/wrenn/wrenn/internal/hostagent/capsules"
	"github.com/wrenn/wrenn/internal/hostagent/statefile"
)

// Mode is what the agent does with running capsules when it stops.
type Mode string

const (
	// Keep leaves capsules running (the next agent adopts them).
	Keep Mode = "keep"
	// Pause pauses them and resumes them at the next start.
	Pause Mode = "pause"
)

// ParseMode parses a -on-shutdown value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Keep, Pause:
		return m, nil
	}
	return "", fmt.Errorf("%q is neither keep nor pause", s)
}

// FileName is the record in the data directory.
const FileName = "paused-on-shutdown.json"

// parallel is how many capsules are paused or resumed at once.
const parallel = 4

// Capsules is what suspend needs of the agent (metrics.Agent, so the pauses and resumes are
// counted like any other).
type Capsules interface {
	// Capsules lists every capsule without draining the agent's auto-paused ids.
	Capsules(ctx context.Context) ([]capsules.Info, error)
	Info(id string) (capsules.Info, error)
	Pause(ctx context.Context, id string) error
	Resume(ctx context.Context, p capsules.ResumeParams) (capsules.Info, error)
}

// record is the file's content.
type record struct {
	PausedAt   time.Time `json:"paused_at"`
	CapsuleIDs []string  `json:"capsule_ids"`
}

// PauseRunning pauses every running capsule (a few at once) and adds each paused id to the record in
// dataDir as soon as it is paused (ids already recorded stay). A capsule that fails to pause keeps
// running and is not recorded; the errors are joined. It returns the ids it paused.
func PauseRunning(ctx context.Context, c Capsules, dataDir string, log *slog.Logger) ([]string, error) {
	infos, err := c.Capsules(ctx)
	if err != nil {
		return nil, err
	}
	rec, err := load(dataDir)
	if err != nil {
		return nil, err
	}
	var (
		mu     sync.Mutex
		paused []string
		errs   []error
	)
	g := new(errgroup.Group)
	g.SetLimit(parallel)
	for _, in := range infos {
		if in.Status != capsules.StatusRunning {
			continue
		}
		g.Go(func() error {
			start := time.Now()
			err := c.Pause(ctx, in.ID)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("pause %s: %w", in.ID, err))
				return nil
			}
			paused = append(paused, in.ID)
			if !slices.Contains(rec.CapsuleIDs, in.ID) {
				rec.CapsuleIDs = append(rec.CapsuleIDs, in.ID)
			}
			rec.PausedAt = time.Now().UTC()
			if err := save(dataDir, rec); err != nil {
				errs = append(errs, fmt.Errorf("record paused %s: %w", in.ID, err))
			}
			log.Info("capsule paused for the agent's shutdown", "capsule_id", in.ID, "took", time.Since(start).Round(time.Millisecond))
			return nil
		})
	}
	_ = g.Wait()
	return paused, errors.Join(errs...)
}

// ResumeRecorded resumes the capsules the record in dataDir names that are still paused, with their
// stored default user and environment, and removes them from the record (the file goes when it is
// empty). Capsules that are gone or no longer paused are dropped; one that fails to resume is dropped
// too, logged, and stays paused (the control plane shows it paused; a user resumes or destroys it).
// When ctx ends first, the ids not yet handled stay recorded for the next start. It returns the ids
// it resumed.
func ResumeRecorded(ctx context.Context, c Capsules, dataDir string, log *slog.Logger) ([]string, error) {
	rec, err := load(dataDir)
	if err != nil || len(rec.CapsuleIDs) == 0 {
		return nil, err
	}
	log.Info("resuming capsules paused at the last shutdown", "count", len(rec.CapsuleIDs))
	var (
		mu      sync.Mutex
		resumed []string
		pending = slices.Clone(rec.CapsuleIDs)
		errs    []error
	)
	done := func(id string) {
		mu.Lock()
		defer mu.Unlock()
		pending = slices.DeleteFunc(pending, func(p string) bool { return p == id })
		if err := save(dataDir, record{PausedAt: rec.PausedAt, CapsuleIDs: pending}); err != nil {
			errs = append(errs, err)
		}
	}
	g := new(errgroup.Group)
	g.SetLimit(parallel)
	for _, id := range rec.CapsuleIDs {
		g.Go(func() error {
			if ctx.Err() != nil {
				return nil // stays recorded
			}
			in, err := c.Info(id)
			if err != nil {
				log.Info("capsule paused at shutdown is gone", "capsule_id", id, "error", err)
				done(id)
				return nil
			}
			if in.Status != capsules.StatusPaused {
				log.Info("capsule paused at shutdown is no longer paused", "capsule_id", id, "status", in.Status)
				done(id)
				return nil
			}
			_, err = c.Resume(ctx, capsules.ResumeParams{ID: id, DefaultUser: in.DefaultUser, DefaultEnv: in.DefaultEnv})
			if err != nil && ctx.Err() != nil {
				return nil // interrupted by the shutdown: stays recorded
			}
			if err != nil {
				log.Error("resume capsule paused at shutdown; it stays paused", "capsule_id", id, "error", err)
				mu.Lock()
				errs = append(errs, fmt.Errorf("resume %s: %w", id, err))
				mu.Unlock()
			} else {
				log.Info("capsule resumed after the agent's restart", "capsule_id", id)
				mu.Lock()
				resumed = append(resumed, id)
				mu.Unlock()
			}
			done(id)
			return nil
		})
	}
	_ = g.Wait()
	return resumed, errors.Join(errs...)
}

// Recorded returns the ids the record in dataDir names.
func Recorded(dataDir string) ([]string, error) {
	rec, err := load(dataDir)
	return rec.CapsuleIDs, err
}

func load(dataDir string) (record, error) {
	var rec record
	b, err := os.ReadFile(filepath.Join(dataDir, FileName))
	if errors.Is(err, fs.ErrNotExist) {
		return rec, nil
	}
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("%s: %w", FileName, err)
	}
	return rec, nil
}

// save writes rec atomically (temporary file, fsync, rename); an empty record removes the file.
func save(dataDir string, rec record) error {
	path := filepath.Join(dataDir, FileName)
	if len(rec.CapsuleIDs) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return statefile.Write(path, append(b, '\n'), true)
}
