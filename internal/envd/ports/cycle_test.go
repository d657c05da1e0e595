package ports

import (
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/envd/ports/portstest"
)

// TestSnapshotCycles does what /snapshot/prepare → /init do 500 times, with
// listeners opening and closing in between and while running, in a
// namespace of its own with the real /proc and interfaces.
func TestSnapshotCycles(t *testing.T) {
	n, child := portstest.RunTest(t, 3*time.Minute)
	if !child {
		return
	}
	leakCheck(t)
	s := New(Config{Interval: 5 * time.Millisecond})
	t.Cleanup(func() { stopWithin(t, s) })
	lc := &portstest.Cycler{
		Ext:       n.Addr,
		Start:     s.Start,
		Stop:      s.Stop,
		Forwarded: s.Forwarded,
	}
	lc.Run(t, 500)
}

// TestSnapshotCyclesLoopback is the same without root: a fake socket table
// and a loopback alias as the external address.
func TestSnapshotCyclesLoopback(t *testing.T) {
	leakCheck(t)
	fp := newFakeProc(t)
	s := newFakeSubsystem(t, fp)
	lc := &portstest.Cycler{
		Ext:       fakeExt,
		Start:     s.Start,
		Stop:      s.Stop,
		Forwarded: s.Forwarded,
		Opened:    fp.add,
		Closed:    fp.remove,
	}
	lc.Run(t, 500)
}
