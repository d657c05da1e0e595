-- name: LockTeamQuota :one
-- Serializes quota checks of a team: the team row is locked until the transaction ends (FOR NO KEY
-- UPDATE does not block inserts referencing the team). NOWAIT: a lock held by another transaction is
-- an error (55P03) at once, so a waiting caller does not hold a connection. Not found: no such team.
SELECT id FROM teams WHERE id = @team_id FOR NO KEY UPDATE NOWAIT;

-- name: GetTeamQuota :one
-- A team's quota overrides (not found: none, every limit is the platform default).
SELECT * FROM team_quotas WHERE team_id = @team_id;

-- name: UpsertTeamQuota :one
-- Sets every override of a team (NULL: the platform default).
INSERT INTO team_quotas (team_id, capsules, vcpus, memory_mb, paused_disk_mb)
VALUES (@team_id, sqlc.narg(capsules), sqlc.narg(vcpus), sqlc.narg(memory_mb), sqlc.narg(paused_disk_mb))
ON CONFLICT (team_id) DO UPDATE
SET capsules = EXCLUDED.capsules, vcpus = EXCLUDED.vcpus, memory_mb = EXCLUDED.memory_mb,
    paused_disk_mb = EXCLUDED.paused_disk_mb, updated_at = now()
RETURNING *;

-- name: TeamQuotaUsage :one
-- What a team's capsules count against its quota: live (not paused, stopped or errored) capsules and
-- their vCPUs and memory, and the disk of paused ones.
SELECT count(*) FILTER (WHERE status IN ('pending', 'starting', 'running', 'missing'))::integer AS capsules,
       COALESCE(sum(vcpus) FILTER (WHERE status IN ('pending', 'starting', 'running', 'missing')), 0)::integer AS vcpus,
       COALESCE(sum(memory_mb) FILTER (WHERE status IN ('pending', 'starting', 'running', 'missing')), 0)::integer AS memory_mb,
       COALESCE(sum(disk_mb) FILTER (WHERE status IN ('paused', 'hibernated')), 0)::integer AS paused_disk_mb
FROM capsules
WHERE team_id = @team_id AND status NOT IN ('stopped', 'error');
