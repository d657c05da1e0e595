package process

import (
	"errors"
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
)

// The reaper is the only code in envd's process service that waits for
// children: one goroutine runs wait4(-1, WNOHANG) on every SIGCHLD and hands
// each status to the process it belongs to. Nothing calls exec.Cmd.Wait or
// os.Process.Wait, so no pid can be waited for twice, and orphans reparented
// to envd (PID 1 or subreaper) are reaped as well.
//
// Consequence for the rest of envd: while a Service runs, any other package
// that starts children and waits for them itself races with this reaper.

func (s *Service) startReaper() {
	s.sigs = make(chan os.Signal, 1)
	signal.Notify(s.sigs, unix.SIGCHLD)
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.reapAll() // children that exited before Notify took effect
		for {
			select {
			case <-s.sigs:
				s.reapAll()
			case <-s.stop:
				return
			}
		}
	}()
}

func (s *Service) stopReaper() {
	signal.Stop(s.sigs)
}

// reapAll collects every exited child. It holds reapMu for the whole loop so
// that a pid reaped here is dispatched before any new fork can reuse it.
func (s *Service) reapAll() {
	s.reapMu.Lock()
	defer s.reapMu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG|unix.WALL, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 { // ECHILD: no children; 0: none exited yet
			return
		}
		p, ok := s.children[pid]
		if !ok {
			s.log.Debug("reaped orphan", "pid", pid, "status", ws)
			continue
		}
		delete(s.children, pid)
		p.setReapedLocked(ws)
	}
}

// signal sends sig to p's process group unless p was already reaped. It
// marks p so that its output stops being forwarded once it is reaped.
func (s *Service) signal(p *proc, sig unix.Signal, timedOut bool) {
	p.markSignaled(timedOut)
	s.reapMu.Lock()
	defer s.reapMu.Unlock()
	if s.children[p.pid] != p { // reaped already: the pid may belong to someone else now
		return
	}
	if err := unix.Kill(-p.pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		s.log.Warn("signal process group", "pid", p.pid, "signal", sig, "err", err)
	}
}
