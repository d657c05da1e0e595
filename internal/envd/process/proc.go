package process

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wrenn/wrenn/api/envd/process"
)

// drainGrace is how long output is still collected after a process that
// exited on its own was reaped, for descendants that keep its pipes open.
const drainGrace = 2 * time.Second

// readSize is the size of one read from an output pipe or PTY.
const readSize = 32 << 10

// proc is one spawned process: its identity, its I/O and its output log.
type proc struct {
	pid       int
	tag       *string
	config    *process.ProcessConfig // as requested: cwd only if given, request envs only
	isPTY     bool
	startedAt time.Time

	outputs []*os.File // read ends: stdout+stderr pipes, or the PTY master
	tty     *os.File   // PTY master (also outputs[0]); nil for pipes

	reaped    chan struct{}   // closed by the reaper once status is set
	status    unix.WaitStatus // written before reaped is closed
	pumpsLeft atomic.Int32
	pumpsDone chan struct{} // closed when every output reader returned
	cut       chan struct{} // closed to stop forwarding output once reaped
	cutOnce   sync.Once
	stopPumps chan struct{} // closed by the supervisor before it closes outputs

	mu    sync.Mutex // guards the fields below
	stdin *os.File   // stdin pipe write end; nil when disabled or closed
	log   outputLog
	wake  chan struct{} // closed and replaced whenever log or end changes
	// holds are the cursors of consumers output must not outrun (the
	// Start stream): a pump waits rather than evict bytes they have not
	// sent, so the process blocks on a full pipe like with any slow reader.
	holds    map[*hold]struct{}
	space    chan struct{} // closed and replaced whenever a hold moves or goes
	end      *process.ProcessEvent_EndEvent
	exitedAt time.Time
	timedOut bool        // killed because its Start lifetime ran out
	lifetime *time.Timer // SIGKILL at the Start deadline; nil without one
}

// setReapedLocked records the wait status; the caller holds Service.reapMu.
func (p *proc) setReapedLocked(ws unix.WaitStatus) {
	p.status = ws
	close(p.reaped)
}

// markSignaled makes the supervisor stop forwarding output as soon as p is
// reaped, so end is not held up by descendants that keep the pipes open.
func (p *proc) markSignaled(timedOut bool) {
	if timedOut {
		p.mu.Lock()
		p.timedOut = true
		p.mu.Unlock()
	}
	p.cutOnce.Do(func() { close(p.cut) })
}

// hold is one holding consumer's position: output before cursor was sent.
type hold struct{ cursor uint64 }

// addHold registers a holding consumer at cursor.
func (p *proc) addHold(cursor uint64) *hold {
	h := &hold{cursor: cursor}
	p.mu.Lock()
	p.holds[h] = struct{}{}
	p.mu.Unlock()
	return h
}

// dropHold unregisters h and lets pumps go on.
func (p *proc) dropHold(h *hold) {
	p.mu.Lock()
	delete(p.holds, h)
	p.signalSpaceLocked()
	p.mu.Unlock()
}

func (p *proc) signalSpaceLocked() {
	close(p.space)
	p.space = make(chan struct{})
}

// roomLocked reports whether n more bytes fit without evicting output a
// holding consumer has not sent yet.
func (p *proc) roomLocked(n int) bool {
	for h := range p.holds {
		if p.log.end+uint64(n)-h.cursor > uint64(p.log.limit) {
			return false
		}
	}
	return true
}

// waitRoom blocks until n bytes fit for every holding consumer, or until
// output is being cut or closed (then it lets the caller go on).
func (p *proc) waitRoom(n int) {
	for {
		p.mu.Lock()
		ok, space := p.roomLocked(n), p.space
		p.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-space:
		case <-p.cut:
			return
		case <-p.stopPumps:
			return
		}
	}
}

// appendOutput adds data to the log and wakes every consumer.
func (p *proc) appendOutput(kind outputKind, data []byte) {
	p.mu.Lock()
	p.log.append(kind, data)
	close(p.wake)
	p.wake = make(chan struct{})
	p.mu.Unlock()
}

// pump copies one output file into the log until EOF or until the file is
// closed by the supervisor.
func (p *proc) pump(f *os.File, kind outputKind) {
	defer func() {
		if p.pumpsLeft.Add(-1) == 0 {
			close(p.pumpsDone)
		}
	}()
	buf := make([]byte, readSize)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			p.waitRoom(n)
			p.appendOutput(kind, append([]byte(nil), buf[:n]...))
		}
		if err != nil {
			// EOF for pipes, EIO for a PTY master once the terminal is gone,
			// ErrClosed once the supervisor cut the output: all mean done.
			return
		}
	}
}

// supervise produces p's end: it waits for the reap, then for the output to
// drain (not after a signal, and at most drainGrace), then publishes end and
// retires p from the live table.
func (s *Service) supervise(p *proc) {
	defer s.procsWG.Done()
	<-p.reaped
	grace := time.NewTimer(drainGrace)
	select {
	case <-p.pumpsDone:
	case <-p.cut:
	case <-grace.C:
		s.log.Debug("output still open after exit; cutting it", "pid", p.pid)
	}
	grace.Stop()
	close(p.stopPumps)
	for _, f := range p.outputs {
		_ = f.Close() // unblocks a pump still reading
	}
	<-p.pumpsDone

	end := endEvent(p.status)
	p.mu.Lock()
	if p.stdin != nil {
		_ = p.stdin.Close()
		p.stdin = nil
	}
	if p.lifetime != nil {
		p.lifetime.Stop()
	}
	p.end = end
	p.exitedAt = time.Now()
	close(p.wake)
	p.wake = make(chan struct{})
	p.mu.Unlock()
	s.retire(p)
	if s.cfg.Ended != nil {
		s.cfg.Ended()
	}
}

// endEvent describes a wait status the way Go's os.ProcessState does, which
// is what the reference envd and the SDKs expect (docs/envd.md).
func endEvent(ws unix.WaitStatus) *process.ProcessEvent_EndEvent {
	switch {
	case ws.Exited():
		code := ws.ExitStatus()
		e := &process.ProcessEvent_EndEvent{ExitCode: int32(code), Exited: true, Status: fmt.Sprintf("exit status %d", code)}
		if code != 0 {
			e.Error = &e.Status
		}
		return e
	case ws.Signaled():
		status := "signal: " + ws.Signal().String()
		if ws.CoreDump() {
			status += " (core dumped)"
		}
		return &process.ProcessEvent_EndEvent{ExitCode: -1, Status: status, Error: &status}
	default:
		status := fmt.Sprintf("unknown wait status %#x", uint32(ws))
		return &process.ProcessEvent_EndEvent{ExitCode: -1, Status: status, Error: &status}
	}
}

// snapshot returns what a consumer at cursor may send next: chunks, the
// offset after them, the end once produced, and a channel closed on change.
// A holding consumer's h moves to cursor: everything before it was sent.
func (p *proc) snapshot(h *hold, cursor uint64, maxBytes int) ([]chunk, uint64, *process.ProcessEvent_EndEvent, bool, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if h != nil && cursor > h.cursor {
		h.cursor = cursor
		p.signalSpaceLocked()
	}
	chunks, next := p.log.readFrom(cursor, maxBytes)
	return chunks, next, p.end, p.timedOut, p.wake
}

func (p *proc) retainedBytes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.size
}

func (p *proc) exitTime() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitedAt
}

// info renders p for List; extended adds the Wrenn fields.
func (p *proc) info(extended bool) *process.ProcessInfo {
	pi := &process.ProcessInfo{Config: p.config, Pid: uint32(p.pid), Tag: p.tag}
	if extended {
		p.mu.Lock()
		pi.StartedAt = timestamppb.New(p.startedAt)
		pi.Pty = p.isPTY
		if p.end != nil {
			pi.End = p.end
			pi.ExitedAt = timestamppb.New(p.exitedAt)
		}
		p.mu.Unlock()
	}
	return pi
}
