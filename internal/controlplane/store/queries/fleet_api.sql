-- Queries of the fleet API (internal/controlplane/fleet): host listings with their team,
-- row locks for deletion, and the capsules a forced deletion stops.

-- name: ListHostsWithTeam :many
-- Every host with its BYOC team's name (admin listing).
SELECT sqlc.embed(hosts), teams.name AS team_name
FROM hosts LEFT JOIN teams ON teams.id = hosts.team_id
ORDER BY hosts.created_at, hosts.id;

-- name: GetHostWithTeam :one
SELECT sqlc.embed(hosts), teams.name AS team_name
FROM hosts LEFT JOIN teams ON teams.id = hosts.team_id
WHERE hosts.id = @id;

-- name: LockHost :one
-- The host row, locked until the transaction ends (deletion, new registration token).
SELECT * FROM hosts WHERE id = @id FOR UPDATE;

-- name: StopHostCapsules :many
-- A host is deleted with force: every capsule on it that is not stopped or
-- errored becomes stopped.
UPDATE capsules
SET status = 'stopped', stopped_at = coalesce(stopped_at, now())
WHERE host_id = @host_id::uuid AND status NOT IN ('stopped', 'error')
RETURNING id, team_id;
