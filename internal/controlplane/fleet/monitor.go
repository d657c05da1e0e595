package fleet

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// checkHeartbeats marks online hosts silent for longer than the heartbeat timeout unreachable and
// their pending and running capsules missing, auditing host.down. One transaction: control planes
// running the monitor together each take a different set of hosts (the UPDATE re-checks the status).
func (s *Service) checkHeartbeats(ctx context.Context) error {
	cutoff := s.now().Add(-s.heartbeatTimeout)
	missing := map[uuid.UUID][]string{}
	var down []uuid.UUID
	err := s.store.Tx(ctx, func(q *db.Queries) error {
		var err error
		down, err = q.MarkSilentHostsUnreachable(ctx, cutoff)
		if err != nil {
			return fmt.Errorf("mark silent hosts unreachable: %w", err)
		}
		for _, id := range down {
			caps, err := q.MarkHostCapsulesMissing(ctx, id)
			if err != nil {
				return fmt.Errorf("mark capsules of host %s missing: %w", ids.Host.Format(id), err)
			}
			capIDs := make([]string, 0, len(caps))
			for _, c := range caps {
				capIDs = append(capIDs, ids.Capsule.Format(c))
			}
			missing[id] = capIDs
			meta := map[string]any{"heartbeat_timeout_sec": int(s.heartbeatTimeout.Seconds())}
			if len(capIDs) > 0 {
				meta["missing_capsule_ids"] = capIDs
			}
			s.recordHostEvent(ctx, q, id, actionDown, meta)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.dropConns(down...)
	for _, id := range down {
		s.log.Warn("host stopped heartbeating: unreachable", "host_id", ids.Host.Format(id),
			"timeout", s.heartbeatTimeout, "missing_capsules", len(missing[id]))
	}
	return nil
}
