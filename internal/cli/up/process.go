package up

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// child is a long-running process of the platform (control plane, host agent) whose output goes to
// a log file under <data-dir>/logs.
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFrom int64         // where this run's output starts in the log
	done    chan struct{} // closed when the process has exited
	err     error         // the exit status; set before done is closed
}

// startChild starts path with args and env, output appended to logPath. The child gets its own process
// group, so a Ctrl-C on the terminal reaches only `wrenn up`, which then stops the children in order;
// and SIGTERM when `wrenn up` dies, so nothing outlives it.
func startChild(name, path string, args, env []string, logPath string) (*child, error) {
	logf, err := openLog(logPath)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logf, "\n=== %s: %s started by wrenn up ===\n", time.Now().UTC().Format(time.RFC3339), name)
	from, err := logf.Seek(0, io.SeekCurrent)
	if err != nil {
		logf.Close()
		return nil, err
	}
	c := &child{name: name, logPath: logPath, logFrom: from, done: make(chan struct{})}
	c.cmd = exec.Command(path, args...)
	c.cmd.Env = env
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that started the child exits: keep it for the child's life.
		runtime.LockOSThread()
		defer logf.Close()
		if err := c.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return c, nil
}

// exited reports whether the process has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to timeout (or until force is closed), then kills the process.
func (c *child) stop(timeout time.Duration, force <-chan struct{}) error {
	if c.exited() {
		return nil
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return nil
	case <-time.After(timeout):
	case <-force:
	}
	_ = c.cmd.Process.Kill()
	<-c.done
	return fmt.Errorf("%s did not stop in time: killed", c.name)
}

// exitError describes an unexpected exit, with the end of the log.
func (c *child) exitError() error {
	return fmt.Errorf("%s exited (%v); end of %s:\n%s", c.name, c.err, c.logPath, c.logTail())
}

// logTail returns the last lines this run of the process wrote.
func (c *child) logTail() string { return tailFrom(c.logPath, c.logFrom, 30) }

// lastLine returns the last line this run of the process wrote (a failing wrenn binary's error).
func (c *child) lastLine() string { return strings.TrimSpace(tailFrom(c.logPath, c.logFrom, 1)) }

// openLog opens a log file for appending (mode 0600: logs may hold links with tokens).
func openLog(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
}

// logTail returns the last n lines of a log file.
func logTail(path string, n int) string { return tailFrom(path, 0, n) }

// tailFrom returns the last n lines of a log file after offset from.
func tailFrom(path string, from int64, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	if from <= int64(len(b)) {
		b = b[from:]
	}
	if len(b) > 64<<10 {
		b = b[len(b)-64<<10:]
	}
	lines := 0
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' && i != len(b)-1 {
			lines++
			if lines == n {
				return string(b[i+1:])
			}
		}
	}
	return string(b)
}

// exitWait bounds how long a stop waits for processes that were asked to exit.
const exitWait = 2 * time.Minute

// gone reports whether process pid has exited (a zombie has: only its parent's wait is missing).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) state …: comm may hold spaces and parentheses, the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// waitGone polls until every process in pids has exited or timeout passes, and returns those left.
func waitGone(pids []int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		var left []int
		for _, pid := range pids {
			if !gone(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processesNaming lists the live processes whose command line contains s, other than this process and
// its ancestors (the shell or make that started `wrenn up` may name the data directory too).
func processesNaming(s string) map[int]string {
	skip := map[int]bool{}
	for pid := os.Getpid(); pid > 1; {
		skip[pid] = true
		ppid, err := parentOf(pid)
		if err != nil {
			break
		}
		pid = ppid
	}
	out := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || skip[pid] || gone(pid) {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if cmd := strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " "); strings.Contains(cmd, s) {
			out[pid] = cmd
		}
	}
	return out
}

// parentOf returns the parent process id of pid.
func parentOf(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return strconv.Atoi(f[1])
}
