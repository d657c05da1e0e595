package e2bapi

import (
	"context"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// expire kills, or pauses (autoPause), every running sandbox whose lifetime ended. Every control plane
// runs it; a sandbox another one handled already answers 404 or 409, which is fine. Failures are logged
// and retried on the next pass.
func (s *Service) expire(ctx context.Context) {
	cs, err := s.caps.Store.ListExpiredCapsules(ctx)
	if err != nil {
		s.log.Warn("list sandboxes whose lifetime ended", "err", err)
		return
	}
	for _, c := range cs {
		id := ids.Capsule.Format(c.ID)
		if c.OnTimeout == onTimeoutPause {
			var paused db.Capsule
			if paused, err = s.caps.Pause(ctx, auth.Identity{}, c.TeamID, id); err == nil {
				err = s.endLifetime(ctx, paused)
			}
		} else {
			err = s.caps.Destroy(ctx, auth.Identity{}, c.TeamID, id)
		}
		if err != nil {
			if st := apierr.From(err).Status; st == 404 || st == 409 {
				continue
			}
			s.log.Warn("end sandbox lifetime", "capsule_id", id, "on_timeout", c.OnTimeout, "err", err)
			continue
		}
		s.log.Info("sandbox lifetime ended", "capsule_id", id, "on_timeout", c.OnTimeout)
	}
}
