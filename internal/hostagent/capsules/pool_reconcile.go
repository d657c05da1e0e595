package capsules

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Who sizes a pool (docs/agent.md, "Warm pools"): the control plane names
// pools in every heartbeat answer (ReconcilePools) and when an admin sets
// one (SetNamedPool, the SetTemplatePool RPC); its size wins for every
// template it names. Config.Pools (the -pool flag) sizes the templates it
// does not name. A template the control plane named and no longer names
// goes back to the flag's size, or is drained.

// ReconcilePools makes the pools the control plane wants on this host
// (desired, every pool it names) the agent's: each of them is set, and
// each pool it named before and names no longer goes back to Config.Pools
// (or is drained). Errors of single pools are joined; the others apply.
func (a *Agent) ReconcilePools(ctx context.Context, desired []PoolSpec) error {
	a.namedMu.Lock()
	defer a.namedMu.Unlock()
	next := make(map[poolKey]bool, len(desired))
	var errs []error
	for _, s := range desired {
		k := poolKey{s.TeamID, s.TemplateID}
		if next[k] {
			errs = append(errs, fmt.Errorf("%w: pool of %s named twice", ErrInvalid, s.TemplateID))
			continue
		}
		if s.Size == 0 {
			continue // not named: the flag's size applies
		}
		next[k] = true
		if err := a.SetPool(ctx, s); err != nil {
			errs = append(errs, fmt.Errorf("pool of %s: %w", s.TemplateID, err))
		}
	}
	prev := a.named
	a.named = next
	for k := range prev {
		if next[k] {
			continue
		}
		if err := a.SetPool(ctx, a.flagPool(k)); err != nil {
			errs = append(errs, fmt.Errorf("pool of %s: %w", k.template, err))
		}
	}
	return errors.Join(errs...)
}

// SetNamedPool is the control plane setting one pool: Size > 0 names the
// template (its size wins over Config.Pools); Size 0 stops naming it, and
// the template goes back to Config.Pools' size, or is drained.
func (a *Agent) SetNamedPool(ctx context.Context, s PoolSpec) error {
	a.namedMu.Lock()
	defer a.namedMu.Unlock()
	k := poolKey{s.TeamID, s.TemplateID}
	if s.Size == 0 {
		if err := a.SetPool(ctx, a.flagPool(k)); err != nil {
			return err
		}
		delete(a.named, k)
		return nil
	}
	if err := a.SetPool(ctx, s); err != nil {
		return err
	}
	a.named[k] = true
	return nil
}

// flagPool is Config.Pools' pool of k: size 0 when the flag has none.
func (a *Agent) flagPool(k poolKey) PoolSpec {
	if i := slices.IndexFunc(a.cfg.Pools, func(c PoolSpec) bool { return c.TeamID == k.team && c.TemplateID == k.template }); i >= 0 {
		return a.cfg.Pools[i]
	}
	return PoolSpec{TeamID: k.team, TemplateID: k.template}
}
