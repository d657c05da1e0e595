package process

import "time"

// sweep drops expired exit records until Close.
func (s *Service) sweep() {
	defer s.bg.Done()
	every := min(max(s.cfg.Retention/4, 10*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			s.mu.Lock()
			s.evictLocked(now)
			s.mu.Unlock()
		case <-s.stop:
			return
		}
	}
}
