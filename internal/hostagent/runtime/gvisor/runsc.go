package gvisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// errTail is how much of runsc's output an error carries.
const errTail = 2 << 10

// maxConsoleLog bounds what a capsule's console.log keeps of earlier runs:
// before every start, a log above it moves, cut to its last maxConsoleLog
// bytes, to console.log.1 (replacing the one before), and console.log
// starts empty. What one run writes is not bounded.
const maxConsoleLog = 1 << 20

// container is one entry of `runsc list -format=json`.
type container struct {
	ID     string `json:"id"`
	Status string `json:"status"` // creating, created, running, stopped, paused
	PID    int    `json:"pid"`
}

// alive reports whether the container's sandbox exists.
func (c container) alive() bool { return c.Status != "stopped" }

// globalFlags are the runsc flags every invocation for a capsule shares.
func (r *Runtime) globalFlags(id string, diskMB int) []string {
	args := []string{
		"--root", r.cfg.StateDir,
		"--platform=systrap",
		"--network=sandbox",
		"--gofer-network-namespace=new",
		// Honour setuid binaries (sudo in the base image); they act on
		// gVisor's kernel, never the host's.
		"--allow-suid",
	}
	if diskMB > 0 {
		args = append(args, fmt.Sprintf("--overlay2=root:dir=%s,size=%dm", r.capsuleDir(id), diskMB))
	}
	if r.cfg.Debug && id != "" {
		args = append(args, "--debug", "--debug-log="+filepath.Join(r.capsuleDir(id), "debug")+"/")
	}
	return args
}

// runsc runs a runsc command that exits on its own and returns its stdout.
// A failure carries the tail of its stderr.
func (r *Runtime) runsc(ctx context.Context, id string, args ...string) ([]byte, error) {
	full := append(r.globalFlags(id, 0), args...)
	cmd := exec.CommandContext(ctx, r.cfg.Runsc, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	// A runsc command must not outlive an agent killed mid-operation: the
	// restarted agent reconciles what the runtime holds, and an orphaned
	// command would change it behind its back.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// Nothing should hold the pipes after runsc exits; if something does,
	// do not wait for it forever.
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := runCmd(cmd)
	r.log.DebugContext(ctx, "runsc", "args", args, "took", time.Since(start), "error", err)
	if err != nil {
		return stdout.Bytes(), fmt.Errorf("runsc %s: %w%s", args[0], err, formatTail(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// runscDetached runs `runsc run -detach` or `runsc restore -detach` for
// capsule id. The sandbox it leaves behind inherits runsc's standard
// streams, so they are a log file in the capsule directory, never a pipe
// someone waits on; a failure carries what runsc added to that file.
func (r *Runtime) runscDetached(ctx context.Context, id string, diskMB int, args ...string) error {
	logPath := filepath.Join(r.capsuleDir(id), consoleLog)
	if err := rotateLog(logPath, maxConsoleLog); err != nil {
		r.log.WarnContext(ctx, "rotate console log", "capsule_id", id, "error", err)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	offset, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}

	full := append(r.globalFlags(id, diskMB), args...)
	cmd := exec.CommandContext(ctx, r.cfg.Runsc, full...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Its own session, so signals meant for the agent's terminal or process
	// group do not reach capsules.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	err = runCmd(cmd)
	r.log.DebugContext(ctx, "runsc", "args", args, "took", time.Since(start), "error", err)
	if err != nil {
		return fmt.Errorf("runsc %s: %w%s", args[0], err, formatTail(readFrom(logPath, offset)))
	}
	return nil
}

// rotateLog keeps the log at path from growing past limit across runs:
// when it is larger, its last limit bytes (from the first full line on)
// replace path+".1" and path is truncated. Truncating in place rather than
// renaming keeps it safe even while a process appends to it (O_APPEND
// writers continue at the new end).
func rotateLog(path string, limit int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() <= limit {
		return err
	}
	tail := make([]byte, limit)
	if _, err := f.ReadAt(tail, st.Size()-limit); err != nil {
		return err
	}
	if i := bytes.IndexByte(tail, '\n'); i >= 0 && i < len(tail)-1 {
		tail = tail[i+1:]
	}
	old := path + ".1"
	if err := os.WriteFile(old+".tmp", tail, 0o600); err != nil {
		return err
	}
	if err := os.Rename(old+".tmp", old); err != nil {
		return err
	}
	return f.Truncate(0)
}

// readFrom returns the last errTail bytes of the file at path written after
// offset.
func readFrom(path string, offset int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	if st.Size()-offset > errTail {
		offset = st.Size() - errTail
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, offset, st.Size()-offset))
	return b
}

func formatTail(b []byte) string {
	if len(b) > errTail {
		b = b[len(b)-errTail:]
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return ""
	}
	return ": " + s
}

// list returns the containers in the state directory.
func (r *Runtime) list(ctx context.Context) ([]container, error) {
	out, err := r.runsc(ctx, "", "list", "-format=json")
	if err != nil {
		return nil, err
	}
	var cs []container // runsc prints null for none
	if err := json.Unmarshal(out, &cs); err != nil {
		return nil, fmt.Errorf("parse runsc list: %w", err)
	}
	return cs, nil
}

// lookup finds container id in the state directory.
func (r *Runtime) lookup(ctx context.Context, id string) (container, bool, error) {
	cs, err := r.list(ctx)
	if err != nil {
		return container{}, false, err
	}
	for _, c := range cs {
		if c.ID == id {
			return c, true, nil
		}
	}
	return container{}, false, nil
}
