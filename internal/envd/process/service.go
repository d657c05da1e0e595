// Package process implements the envd process.Process Connect service:
// spawning, reaping, streaming and controlling the processes users start in
// a capsule, plus Wrenn's retained output log and exit records.
package process

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/api/envd/process"
	"github.com/wrenn/wrenn/api/envd/process/processconnect"
	"github.com/wrenn/wrenn/internal/envd/defaults"
)

const (
	defaultOutputLimit   = 1 << 20
	defaultRetention     = 10 * time.Minute
	defaultTotalRetained = 64 << 20

	// closeWait bounds how long Close waits for killed processes to be
	// reaped before it stops the reaper anyway.
	closeWait = 10 * time.Second
)

// Config configures a Service.
type Config struct {
	Log           *slog.Logger
	Defaults      *defaults.Store
	OutputLimit   int           // bytes of output history kept per process; 0 → 1 MiB
	Retention     time.Duration // how long exited records stay; 0 → 10 min
	TotalRetained int           // cap on retained output of exited records; 0 → 64 MiB (evict oldest exited first)
	Started       func()        // called after each process starts, outside any lock; nil: nothing
	Ended         func()        // called after each process's end was produced, outside any lock; nil: nothing
}

// Service is the process.Process handler. It owns every process it spawns,
// the reaper that waits for them (and for orphans), and the retained exit
// records.
type Service struct {
	log      *slog.Logger
	defaults *defaults.Store
	cfg      Config

	// reapMu serialises spawning, reaping and signalling: a pid is forked and
	// registered in children under it, reaped and removed under it, and only
	// signalled under it while still registered, so a reaped (and possibly
	// reused) pid is never signalled and an exit is never lost.
	reapMu   sync.Mutex
	children map[int]*proc // forked and not yet reaped
	closed   bool          // no more spawns; guarded by reapMu

	mu            sync.Mutex // guards the fields below
	live          []*proc    // started and whose end has not been produced, oldest first
	exited        []*proc    // retained exit records, oldest exit first
	retainedBytes int        // output held by exited

	subreaper bool           // we set PR_SET_CHILD_SUBREAPER and clear it on Close
	sigs      chan os.Signal // SIGCHLD notifications for the reaper
	stop      chan struct{}  // closed by Close to stop the reaper and sweeper
	retired   chan struct{}  // wakes the sweeper when an exit record is added; buffered
	bg        sync.WaitGroup // reaper and sweeper
	procsWG   sync.WaitGroup // per-process pumps and supervisors
	closeOnce sync.Once
}

var _ processconnect.ProcessHandler = (*Service)(nil)

// New returns a running service: its reaper and retention sweeper are started.
func New(cfg Config) (*Service, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Defaults == nil {
		return nil, errors.New("process: Config.Defaults is required")
	}
	if cfg.OutputLimit <= 0 {
		cfg.OutputLimit = defaultOutputLimit
	}
	if cfg.Retention <= 0 {
		cfg.Retention = defaultRetention
	}
	if cfg.TotalRetained <= 0 {
		cfg.TotalRetained = defaultTotalRetained
	}
	s := &Service{
		log:      cfg.Log,
		defaults: cfg.Defaults,
		cfg:      cfg,
		children: map[int]*proc{},
		stop:     make(chan struct{}),
		retired:  make(chan struct{}, 1),
	}
	// As PID 1 every orphan is ours already; otherwise become a subreaper so
	// orphaned grandchildren of user processes are reparented to us and reaped.
	if os.Getpid() != 1 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return nil, fmt.Errorf("process: set child subreaper: %w", err)
		}
		s.subreaper = true
	}
	s.startReaper()
	s.bg.Add(1)
	go s.sweep()
	return s, nil
}

// Close SIGKILLs every live process group, waits until they are reaped and
// their ends produced, then stops the reaper and the sweeper.
func (s *Service) Close() {
	s.closeOnce.Do(func() {
		s.reapMu.Lock()
		s.closed = true
		s.reapMu.Unlock()

		s.mu.Lock()
		live := slices.Clone(s.live)
		s.mu.Unlock()
		for _, p := range live {
			s.signal(p, unix.SIGKILL, false)
		}
		done := make(chan struct{})
		go func() {
			s.procsWG.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(closeWait):
			s.log.Warn("processes still running after SIGKILL; stopping the reaper anyway", "wait", closeWait)
		}

		close(s.stop)
		s.stopReaper()
		s.bg.Wait()
		if s.subreaper {
			_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
		}
	})
}

// addLive records a freshly spawned process in the table.
func (s *Service) addLive(p *proc) {
	s.mu.Lock()
	s.live = append(s.live, p)
	s.mu.Unlock()
}

// retire moves p from the live table to the retained exit records, right
// after its end was produced, and evicts the oldest records over the cap.
func (s *Service) retire(p *proc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.live = slices.DeleteFunc(s.live, func(q *proc) bool { return q == p })
	s.exited = append(s.exited, p)
	s.retainedBytes += p.retainedBytes()
	s.evictLocked(time.Now())
	select {
	case s.retired <- struct{}{}:
	default:
	}
}

// evictLocked drops exit records older than the retention period and, oldest
// exit first, records while their output exceeds TotalRetained.
func (s *Service) evictLocked(now time.Time) {
	n := 0
	for n < len(s.exited) {
		p := s.exited[n]
		if now.Sub(p.exitTime()) < s.cfg.Retention && s.retainedBytes <= s.cfg.TotalRetained {
			break
		}
		s.retainedBytes -= p.retainedBytes()
		n++
	}
	if n > 0 {
		clear(s.exited[:n])
		s.exited = s.exited[n:]
	}
}

// find resolves a selector against the live table and, when withExited is
// set, the retained exit records; a live process wins over a record.
func (s *Service) find(sel *process.ProcessSelector, withExited bool) (*proc, error) {
	match, describe, err := selectorMatcher(sel)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.live) - 1; i >= 0; i-- {
		if match(s.live[i]) {
			return s.live[i], nil
		}
	}
	if withExited {
		for i := len(s.exited) - 1; i >= 0; i-- {
			if match(s.exited[i]) {
				return s.exited[i], nil
			}
		}
	}
	return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("process with %s not found", describe))
}

func selectorMatcher(sel *process.ProcessSelector) (match func(*proc) bool, describe string, err error) {
	switch v := sel.GetSelector().(type) {
	case *process.ProcessSelector_Pid:
		return func(p *proc) bool { return p.pid == int(v.Pid) }, fmt.Sprintf("pid %d", v.Pid), nil
	case *process.ProcessSelector_Tag:
		return func(p *proc) bool { return p.tag != nil && *p.tag == v.Tag }, "tag " + v.Tag, nil
	default:
		return nil, "", connect.NewError(connect.CodeInvalidArgument, errors.New("process selector: pid or tag is required"))
	}
}
