package fleet

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Pick chooses the host of a new capsule of team needing memoryMB of memory and diskMB of disk: among
// online hosts with an address that fit it (memory and disk left after what their capsules reserve;
// a spec the agent did not report does not limit), and are not in avoid (hosts a caller could not
// reach just now), the one with the most memory and CPU headroom. Teams with BYOC enabled run only on
// their own BYOC hosts, every other team (the platform team included) only on regular hosts.
// When none fits but hosts of the right kind have registered and are not online yet, they are probed
// (one whose agent answers goes online and is chosen), and Pick waits for one that
// registered or heartbeated recently (Config.PendingWait). None fits → 503 no_capacity.
func (s *Service) Pick(ctx context.Context, team uuid.UUID, memoryMB, diskMB int32, avoid ...uuid.UUID) (db.Host, error) {
	return s.pickFor(ctx, team, nil, memoryMB, diskMB, avoid)
}

// PickPooled is Pick for a create that a warm pool of pool's template and shape can serve: among the
// hosts that fit, one whose fresh pool report has a ready member of that pool wins over the others
// (the most headroom among them), so the create takes the member instead of booting (docs/api.md,
// "Warm pools").
func (s *Service) PickPooled(ctx context.Context, team uuid.UUID, pool PoolShape, memoryMB, diskMB int32, avoid ...uuid.UUID) (db.Host, error) {
	return s.pickFor(ctx, team, &pool, memoryMB, diskMB, avoid)
}

func (s *Service) pickFor(ctx context.Context, team uuid.UUID, pool *PoolShape, memoryMB, diskMB int32, avoid []uuid.UUID) (db.Host, error) {
	t, err := s.store.GetTeamAnyState(ctx, team)
	if err != nil {
		if store.IsNotFound(err) {
			return db.Host{}, apierr.NotFound("team not found")
		}
		return db.Host{}, apierr.Internal(fmt.Errorf("read team: %w", err))
	}
	p := db.ListSchedulableHostsParams{Type: store.HostRegular}
	if t.IsBYOC && team != store.PlatformTeamID {
		p = db.ListSchedulableHostsParams{Type: store.HostBYOC, TeamID: &team}
	}
	deadline := time.Now().Add(s.pendingWait)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		h, ok, err := s.pick(ctx, p, pool, memoryMB, diskMB, avoid)
		if err != nil || ok {
			return h, err
		}
		up, starting, err := s.activatePending(ctx, p.Type, p.TeamID)
		if err != nil {
			return db.Host{}, apierr.Internal(err)
		}
		if up {
			continue
		}
		if !starting || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return db.Host{}, apierr.Internal(ctx.Err())
		case <-time.After(wait):
		}
	}
	where := "online host"
	if p.Type == store.HostBYOC {
		where = "online BYOC host of the team"
	}
	return db.Host{}, apierr.NoCapacity(fmt.Sprintf("no %s can fit a capsule with %d MB memory and %d MB disk", where, memoryMB, diskMB))
}

// pick is one pass of Pick over the online hosts: ok is false when none fits. With pool, the hosts
// reporting a ready member of it come first.
func (s *Service) pick(ctx context.Context, p db.ListSchedulableHostsParams, pool *PoolShape, memoryMB, diskMB int32, avoid []uuid.UUID) (db.Host, bool, error) {
	p.PoolsFreshAfter = s.poolsFreshAfter()
	rows, err := s.store.ListSchedulableHosts(ctx, p)
	if err != nil {
		return db.Host{}, false, apierr.Internal(fmt.Errorf("list schedulable hosts: %w", err))
	}
	var pooled []uuid.UUID
	if pool != nil {
		if pooled, err = s.store.ListReadyPoolHosts(ctx, db.ListReadyPoolHostsParams{
			FreshAfter: p.PoolsFreshAfter, TeamID: pool.TeamID, TemplateID: pool.Template,
			VCPUs: pool.VCPUs, MemoryMB: pool.MemoryMB, DiskMB: pool.DiskMB, AllowInternet: pool.AllowInternet,
		}); err != nil {
			return db.Host{}, false, apierr.Internal(fmt.Errorf("list hosts with a ready pool: %w", err))
		}
	}
	best := choose(rows, pooled, memoryMB, diskMB, avoid)
	if best == nil {
		return db.Host{}, false, nil
	}
	return best.Host, true, nil
}

// choose returns the host among rows that fits memoryMB and diskMB, is not in avoid and has the most
// headroom, a host in pooled (a ready warm pool member) before any other; nil when none fits.
func choose(rows []db.ListSchedulableHostsRow, pooled []uuid.UUID, memoryMB, diskMB int32, avoid []uuid.UUID) *db.ListSchedulableHostsRow {
	var (
		best       *db.ListSchedulableHostsRow
		bestScore  score
		bestPooled bool
	)
	for i := range rows {
		r := &rows[i]
		if slices.Contains(avoid, r.Host.ID) || !fits(r, memoryMB, diskMB) {
			continue
		}
		isPooled := slices.Contains(pooled, r.Host.ID)
		if isPooled != bestPooled && best != nil {
			if !isPooled {
				continue
			}
			best = nil // the first pooled host beats every host without a member
		}
		if sc := headroom(r); best == nil || sc.better(bestScore) {
			best, bestScore, bestPooled = r, sc, isPooled
		}
	}
	return best
}

// fits reports whether host r has memoryMB and diskMB left.
func fits(r *db.ListSchedulableHostsRow, memoryMB, diskMB int32) bool {
	if m := r.Host.MemoryMB; m != nil && int64(*m)-int64(r.MemoryMBReserved) < int64(memoryMB) {
		return false
	}
	if d := r.Host.DiskGB; d != nil && int64(*d)*1024-r.DiskMBReserved < int64(diskMB) {
		return false
	}
	return true
}

// score ranks hosts: the sum of the free fractions of memory and CPU (a spec that is not reported
// counts 0), then free memory in MB.
type score struct {
	fraction float64
	freeMB   int64
}

func (a score) better(b score) bool {
	if a.fraction != b.fraction {
		return a.fraction > b.fraction
	}
	return a.freeMB > b.freeMB
}

func headroom(r *db.ListSchedulableHostsRow) score {
	var sc score
	if m := r.Host.MemoryMB; m != nil && *m > 0 {
		sc.freeMB = int64(*m) - int64(r.MemoryMBReserved)
		sc.fraction += float64(sc.freeMB) / float64(*m)
	}
	if c := r.Host.CPUCores; c != nil && *c > 0 {
		sc.fraction += float64(int64(*c)-int64(r.VCPUsReserved)) / float64(*c)
	}
	return sc
}

// PickHost checks that host can take a new capsule of team needing memoryMB of memory and diskMB of
// disk, the way Pick checks every host: it must be online with an address and have the memory and
// disk left after what its capsules reserve. A capsule created from a snapshot template must run on
// the host holding the template's files. Unknown, offline or full → 503 no_capacity.
func (s *Service) PickHost(ctx context.Context, host, team uuid.UUID, memoryMB, diskMB int32) (db.Host, error) {
	h, err := s.store.GetHost(ctx, host)
	if err != nil && !store.IsNotFound(err) {
		return db.Host{}, apierr.Internal(fmt.Errorf("read host: %w", err))
	}
	if err != nil || h.Status != store.HostOnline || h.Address == nil {
		return db.Host{}, apierr.NoCapacity("the host holding the template is not available")
	}
	p := db.ListSchedulableHostsParams{Type: h.Type, PoolsFreshAfter: s.poolsFreshAfter()}
	if h.Type == store.HostBYOC {
		p.TeamID = h.TeamID
	}
	rows, err := s.store.ListSchedulableHosts(ctx, p)
	if err != nil {
		return db.Host{}, apierr.Internal(fmt.Errorf("list schedulable hosts: %w", err))
	}
	for i := range rows {
		r := &rows[i]
		if r.Host.ID != host {
			continue
		}
		if !fits(r, memoryMB, diskMB) {
			break
		}
		return r.Host, nil
	}
	return db.Host{}, apierr.NoCapacity(fmt.Sprintf("the host holding the template cannot fit a capsule with %d MB memory and %d MB disk", memoryMB, diskMB))
}
