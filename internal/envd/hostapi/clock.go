package hostapi

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// stepClock sets CLOCK_REALTIME to t.
func stepClock(t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return fmt.Errorf("clock_settime: %w", err)
	}
	return nil
}
