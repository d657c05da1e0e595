package hostapi

import (
	"net/http"
	"runtime"
	"runtime/debug"
)

// prepareSnapshot quiesces envd right before the VM is frozen: no port
// goroutine mid-work, and as little heap as possible in the snapshot. The
// next /init restarts the port subsystem.
func (h *host) prepareSnapshot(w http.ResponseWriter, _ *http.Request) {
	if h.ports != nil {
		h.ports.Stop()
	}
	// Two collections, the second of which returns freed memory to the OS
	// (FreeOSMemory collects, then scavenges).
	runtime.GC()
	debug.FreeOSMemory()
	h.log.Debug("prepared for snapshot")
	noContent(w)
}
