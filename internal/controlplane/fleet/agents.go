// Package fleet owns the control plane's hosts: creation and one-time registration tokens, agent
// registration and credential refresh (host JWT, rotating refresh token, mTLS certificate from the
// internal CA), heartbeats and the unreachable monitor, least-loaded scheduling, host deletion, and the
// pool of mutual-TLS Connect clients the control plane calls agents with.
package fleet

import (
	"context"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/api/hostagent/hostagent/v1/hostagentv1connect"
)

// Agents hands out Connect clients of host agents.
type Agents interface {
	// Agent returns a client of the agent on host hostID. A host that is unknown, has no address or is
	// not online (pending, unreachable, …) is an *apierr.Error 503 host_unavailable
	// "sandbox host is not reachable".
	Agent(ctx context.Context, hostID uuid.UUID) (hostagentv1connect.HostAgentServiceClient, error)
}

// HostAgents is an optional fast path of Agents for a caller that has just read the host's status and
// address (with the capsule, in one query): the same checks and clients as Agent, no database read.
type HostAgents interface {
	AgentOf(hostID uuid.UUID, status string, address *string) (hostagentv1connect.HostAgentServiceClient, error)
}
