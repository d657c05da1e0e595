-- Queries of the capsule lifecycle API (internal/controlplane/capsules).

-- name: MarkCapsulePaused :one
-- A running (or missing) capsule was paused on its host: it keeps its host but has no address.
UPDATE capsules SET status = 'paused', host_ip = NULL
WHERE id = @id AND status = ANY (@from_statuses::text[])
RETURNING *;

-- name: MarkCapsuleStopped :one
-- A capsule was destroyed (or is gone from its host), from one of from_statuses.
UPDATE capsules SET status = 'stopped', host_ip = NULL, stopped_at = coalesce(stopped_at, now())
WHERE id = @id AND status = ANY (@from_statuses::text[])
RETURNING *;

-- name: MarkCapsuleError :one
-- A pending capsule's creation failed.
UPDATE capsules SET status = 'error', host_ip = NULL, stopped_at = coalesce(stopped_at, now())
WHERE id = @id AND status = 'pending'
RETURNING *;

-- name: MarkCapsuleRunningAgain :one
-- A missing capsule's host reports it running: it comes back without a new start.
UPDATE capsules SET status = 'running'
WHERE id = @id AND status = 'missing'
RETURNING *;

-- name: ListOnlineHosts :many
-- Hosts whose agent can be called.
SELECT * FROM hosts WHERE status = 'online' AND address IS NOT NULL ORDER BY id;

-- name: ListCapsuleStatuses :many
-- The status of each of ids that has a row.
SELECT id, status FROM capsules WHERE id = ANY (@ids::uuid[]);

-- name: ListTeamLiveCapsuleIDs :many
-- A team's capsules that are not stopped or errored (team deletion destroys them).
SELECT id FROM capsules WHERE team_id = @team_id AND status NOT IN ('stopped', 'error') ORDER BY created_at, id;

-- name: InsertTemplate :one
-- A template with a chosen id (the id its files carry on the host) and the host holding them.
INSERT INTO templates (id, team_id, name, type, vcpus, memory_mb, size_bytes, default_user, default_env, metadata,
                       created_by, host_id)
VALUES (@id, @team_id, @name, @type, sqlc.narg(vcpus), sqlc.narg(memory_mb), @size_bytes, @default_user,
        @default_env, @metadata, sqlc.narg(created_by), sqlc.narg(host_id))
RETURNING *;

-- name: TeamStatsSeries :many
-- A team's samples since since, in buckets of bucket_sec seconds (the peak of each bucket).
SELECT to_timestamp(floor(extract(epoch FROM ts) / @bucket_sec::int) * @bucket_sec::int)::timestamptz AS bucket,
       max(running_count)::int AS running_count,
       max(vcpus)::int AS vcpus,
       max(memory_mb)::int AS memory_mb
FROM team_stats_samples
WHERE team_id = @team_id AND ts >= @since
GROUP BY bucket
ORDER BY bucket;

-- name: GetCapsuleWithHost :one
-- A capsule of one team with its host (NULL columns when it has none), for docs/api.md checks in one
-- round trip.
SELECT sqlc.embed(capsules), hosts.status AS host_status, hosts.address AS host_address
FROM capsules LEFT JOIN hosts ON hosts.id = capsules.host_id
WHERE capsules.team_id = @team_id AND capsules.id = @id;

-- name: GetCapsuleWithHostTouch :one
-- GetCapsuleWithHost that also records activity on the capsule when it is running, in the same round
-- trip (the row returned is the one read before the update).
WITH touched AS (
    UPDATE capsules SET last_active_at = now()
    WHERE capsules.team_id = @team_id AND capsules.id = @id AND capsules.status = 'running'
    RETURNING capsules.id
)
SELECT sqlc.embed(capsules), hosts.status AS host_status, hosts.address AS host_address
FROM capsules LEFT JOIN hosts ON hosts.id = capsules.host_id
WHERE capsules.team_id = @team_id AND capsules.id = @id;
