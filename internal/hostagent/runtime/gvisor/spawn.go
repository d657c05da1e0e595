package gvisor

import (
	"os/exec"
	"runtime"
)

// runsc commands carry Pdeathsig=SIGKILL so none outlives an agent killed
// mid-operation. The kernel sends that signal when the *thread* that forked
// the child exits, and Go ends threads (a goroutine that exits while locked
// to its thread takes the thread with it — the network code does that on
// purpose). So every runsc command is forked from one goroutine locked for
// good to one thread, which never exits.
var spawns = make(chan spawnReq)

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func init() {
	go func() {
		runtime.LockOSThread()
		for r := range spawns {
			r.done <- r.cmd.Start()
		}
	}()
}

// startCmd starts cmd from the spawner thread.
func startCmd(cmd *exec.Cmd) error {
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	spawns <- r
	return <-r.done
}

// runCmd is cmd.Run with the start done from the spawner thread.
func runCmd(cmd *exec.Cmd) error {
	if err := startCmd(cmd); err != nil {
		return err
	}
	return cmd.Wait()
}
