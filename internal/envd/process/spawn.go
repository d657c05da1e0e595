package process

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/api/envd/process"
	"github.com/wrenn/wrenn/internal/envd/osuser"
)

// fallbackPATH is used when neither the global env nor envd itself has one.
const fallbackPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// userOOMScoreAdj is what user processes get instead of envd's own OOM
// protection (docs/envd.md).
const userOOMScoreAdj = "100"

// spawnRequest is a validated Start request.
type spawnRequest struct {
	user     *osuser.User
	config   *process.ProcessConfig
	pty      *process.PTY // nil: pipes
	stdin    bool         // open a stdin pipe (pipes only)
	tag      *string
	lifetime time.Duration // 0: unlimited
}

// spawn starts the process described by r with its output already attached.
// Errors are Connect errors (invalid_argument for anything about the request
// or the exec, unavailable after Close).
func (s *Service) spawn(r spawnRequest) (*proc, error) {
	cfg := r.config
	if cfg.GetCmd() == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("process.cmd is required"))
	}
	env := s.environ(r.user, cfg.GetEnvs())
	cwd, err := osuser.ResolvePath(r.user, cfg.GetCwd(), s.defaults.DefaultWorkdir())
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("cwd: %w", err))
	}
	if fi, err := os.Stat(cwd); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("cwd '%s' does not exist", cwd))
	} else if !fi.IsDir() {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("cwd '%s' is not a directory", cwd))
	}
	path, err := lookPath(cfg.GetCmd(), env["PATH"], cwd)
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}

	sys := &syscall.SysProcAttr{}
	if os.Geteuid() == 0 {
		sys.Credential = &syscall.Credential{Uid: r.user.UID, Gid: r.user.GID, Groups: r.user.Groups}
	} else if r.user.UID != uint32(os.Geteuid()) {
		return nil, connect.NewError(connect.CodePermissionDenied,
			fmt.Errorf("envd is not root and cannot run processes as %s", r.user.Name))
	}

	p := &proc{
		tag:       r.tag,
		config:    requestedConfig(cfg),
		isPTY:     r.pty != nil,
		reaped:    make(chan struct{}),
		pumpsDone: make(chan struct{}),
		cut:       make(chan struct{}),
		stopPumps: make(chan struct{}),
		wake:      make(chan struct{}),
		space:     make(chan struct{}),
		holds:     map[*hold]struct{}{},
		log:       outputLog{limit: s.cfg.OutputLimit},
	}
	// childEnds are envd's copies of the child's descriptors, closed once the
	// child has them; ours are closed too if the spawn fails.
	var childEnds, ours []*os.File
	var stdio [3]*os.File
	defer func() {
		for _, f := range childEnds {
			_ = f.Close()
		}
	}()
	fail := func(err error) (*proc, error) {
		for _, f := range ours {
			_ = f.Close()
		}
		return nil, err
	}
	var kinds []outputKind
	if r.pty != nil {
		master, tty, err := pty.Open()
		if err != nil {
			return fail(fmt.Errorf("open pty: %w", err))
		}
		childEnds = append(childEnds, tty)
		if sz := r.pty.GetSize(); sz != nil {
			if err := pty.Setsize(tty, &pty.Winsize{Cols: uint16(sz.GetCols()), Rows: uint16(sz.GetRows())}); err != nil {
				_ = master.Close()
				return fail(fmt.Errorf("set pty size: %w", err))
			}
		}
		if p.tty, err = pollable(master); err != nil {
			return fail(fmt.Errorf("pty master: %w", err))
		}
		ours = append(ours, p.tty)
		p.outputs, kinds = []*os.File{p.tty}, []outputKind{kindPTY}
		stdio = [3]*os.File{tty, tty, tty}
		sys.Setsid, sys.Setctty, sys.Ctty = true, true, 0
	} else {
		if r.stdin {
			pr, pw, err := os.Pipe()
			if err != nil {
				return fail(fmt.Errorf("stdin pipe: %w", err))
			}
			stdio[0], p.stdin = pr, pw
			ours = append(ours, pw)
		} else if stdio[0], err = os.Open(os.DevNull); err != nil {
			return fail(fmt.Errorf("open %s: %w", os.DevNull, err))
		}
		childEnds = append(childEnds, stdio[0])
		for i, k := range []outputKind{kindStdout, kindStderr} {
			pr, pw, err := os.Pipe()
			if err != nil {
				return fail(fmt.Errorf("output pipe: %w", err))
			}
			ours = append(ours, pr)
			childEnds = append(childEnds, pw)
			stdio[i+1] = pw
			p.outputs = append(p.outputs, pr)
			kinds = append(kinds, k)
		}
		sys.Setpgid = true
	}
	fds := make([]uintptr, len(stdio))
	for i, f := range stdio {
		fds[i] = f.Fd() // also puts the child's ends in blocking mode
	}
	argv := append([]string{cfg.GetCmd()}, cfg.GetArgs()...)
	attr := &syscall.ProcAttr{Dir: cwd, Env: envList(env), Files: fds, Sys: sys}

	s.reapMu.Lock()
	if s.closed {
		s.reapMu.Unlock()
		return fail(connect.NewError(connect.CodeUnavailable, errors.New("envd is shutting down")))
	}
	pid, err := syscall.ForkExec(path, argv, attr)
	if err != nil {
		s.reapMu.Unlock()
		return fail(connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("start %s: %w", cfg.GetCmd(), err)))
	}
	p.pid, p.startedAt = pid, time.Now()
	s.children[pid] = p
	s.adjustLocked(pid)
	p.pumpsLeft.Store(int32(len(p.outputs)))
	s.procsWG.Add(len(p.outputs) + 1)
	s.addLive(p) // before reapMu is released, so Close's kill sweep sees it
	s.reapMu.Unlock()

	for i, f := range p.outputs {
		go func() {
			defer s.procsWG.Done()
			p.pump(f, kinds[i])
		}()
	}
	if r.lifetime > 0 {
		p.mu.Lock()
		if p.end == nil {
			p.lifetime = time.AfterFunc(r.lifetime, func() { s.signal(p, unix.SIGKILL, true) })
		}
		p.mu.Unlock()
	}
	go s.supervise(p)
	if s.cfg.Started != nil {
		s.cfg.Started()
	}
	return p, nil
}

// adjustLocked undoes envd's OOM protection and priority for a new child;
// best effort. The caller holds reapMu, so pid cannot have been reused.
func (s *Service) adjustLocked(pid int) {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid), []byte(userOOMScoreAdj), 0); err != nil {
		s.log.Debug("set oom_score_adj", "pid", pid, "err", err)
	}
	if err := unix.Setpriority(unix.PRIO_PROCESS, pid, 0); err != nil {
		s.log.Debug("set priority", "pid", pid, "err", err)
	}
}

// environ layers the environment per docs/envd.md, later entries winning:
// PATH, the user's identity, the global env, the request's envs.
func (s *Service) environ(u *osuser.User, req map[string]string) map[string]string {
	global := s.defaults.Env()
	env := map[string]string{"PATH": os.Getenv("PATH")}
	if env["PATH"] == "" {
		env["PATH"] = fallbackPATH
	}
	maps.Copy(env, u.Environ())
	maps.Copy(env, global)
	maps.Copy(env, req)
	return env
}

func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

// requestedConfig is the config as List reports it: what the caller sent.
func requestedConfig(c *process.ProcessConfig) *process.ProcessConfig {
	out := &process.ProcessConfig{Cmd: c.GetCmd(), Args: slices.Clone(c.GetArgs()), Cwd: c.Cwd}
	if len(c.GetEnvs()) > 0 {
		out.Envs = maps.Clone(c.GetEnvs())
	}
	return out
}

// lookPath finds file on pathEnv the way the child's exec would; relative
// entries are taken relative to the child's cwd.
func lookPath(file, pathEnv, cwd string) (string, error) {
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(cwd, p)
	}
	if strings.Contains(file, "/") {
		if err := executable(abs(file)); err != nil {
			return "", fmt.Errorf("exec: %q: %w", file, err)
		}
		return abs(file), nil
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		if p := abs(filepath.Join(dir, file)); executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", file)
}

func executable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return syscall.EISDIR
	}
	if fi.Mode()&0o111 == 0 {
		return fs.ErrPermission
	}
	return nil
}

// pollable returns f as a non-blocking file registered with Go's poller, so
// a pending Read returns once the file is closed (creack/pty hands out a
// blocking master, whose Read would block a goroutine forever).
func pollable(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	_ = f.Close()
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), nil
}
