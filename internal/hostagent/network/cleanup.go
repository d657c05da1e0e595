package network

import (
	"context"
	"errors"
	"strings"
)

// Cleanup removes what a previous agent process left behind: namespaces
// "<prefix>-<id>" and host links "<prefix>h<slot>" of capsules keep does not
// name, and firewall entries of links that are gone. Objects without the
// prefix are never touched. Call it at start, before creating networks.
func (m *Manager) Cleanup(ctx context.Context, keep func(id string) bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	errs := m.removeLinksLocked(func(id string) bool { return id != "" && keep(id) })
	m.mu.Unlock()

	nsPrefix := netnsName(m.prefix, "")
	names, err := listNetns(nsPrefix)
	if err != nil {
		errs = append(errs, err)
	}
	for _, name := range names {
		id := strings.TrimPrefix(name, nsPrefix)
		if keep(id) {
			continue
		}
		if err := deleteNetns(name); err != nil {
			errs = append(errs, err)
			continue
		}
		m.log.Info("removed leftover capsule network", "capsule_id", id, "netns", name)
	}
	return errors.Join(errs...)
}
