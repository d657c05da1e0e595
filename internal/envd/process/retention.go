package process

import "time"

// sweep drops expired exit records until Close. It sleeps until the oldest
// record expires and, with no record, until one is retired: an idle capsule's
// envd keeps no timer for it.
func (s *Service) sweep() {
	defer s.bg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		s.mu.Lock()
		now := time.Now()
		s.evictLocked(now)
		var due <-chan time.Time
		if len(s.exited) > 0 {
			// Also below the cap, a record is gone at the latest when it expires.
			t.Reset(max(s.exited[0].exitTime().Add(s.cfg.Retention).Sub(now), 10*time.Millisecond))
			due = t.C
		}
		s.mu.Unlock()
		select {
		case <-due:
		case <-s.retired:
			t.Stop()
		case <-s.stop:
			return
		}
	}
}
