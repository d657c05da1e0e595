-- name: CreateHost :one
INSERT INTO hosts (type, team_id, provider, availability_zone, tags, created_by)
VALUES (@type, sqlc.narg(team_id), sqlc.narg(provider), sqlc.narg(availability_zone), coalesce(@tags::text[], '{}'), sqlc.narg(created_by))
RETURNING *;

-- name: GetHost :one
SELECT * FROM hosts WHERE id = @id;

-- name: ListHosts :many
SELECT * FROM hosts ORDER BY created_at, id;

-- name: ListHostsByTeam :many
SELECT * FROM hosts WHERE team_id = @team_id::uuid ORDER BY created_at, id;

-- name: RegisterHost :one
-- First registration of a pending host: its specs and address. The host stays
-- pending (it takes no work) until the control plane has reached its agent
-- (MarkHostOnline).
UPDATE hosts
SET address = @address::text,
    arch = sqlc.narg(arch),
    cpu_cores = sqlc.narg(cpu_cores),
    memory_mb = sqlc.narg(memory_mb),
    disk_gb = sqlc.narg(disk_gb)
WHERE id = @id AND status = 'pending'
RETURNING *;

-- name: MarkHostOnline :execrows
-- A registered pending host whose agent the control plane has reached goes
-- online.
UPDATE hosts SET status = 'online', last_heartbeat_at = now()
WHERE id = @id AND status = 'pending' AND address IS NOT NULL;

-- name: ListRegisteredPendingHosts :many
-- Pending hosts whose agent has registered (they have an address), of one type
-- (and, for byoc, one team; any team when team_id is null and type is empty).
SELECT * FROM hosts
WHERE status = 'pending' AND address IS NOT NULL
  AND (@type::text = '' OR type = @type::text)
  AND (sqlc.narg(team_id)::uuid IS NULL OR team_id = sqlc.narg(team_id))
ORDER BY id;

-- name: HostHeartbeat :one
-- Records a heartbeat; an unreachable host comes back online. Returns the
-- status before and after, so the caller can react to a host coming back.
WITH prev AS (SELECT hosts.id, hosts.status FROM hosts WHERE hosts.id = @id FOR UPDATE)
UPDATE hosts
SET last_heartbeat_at = now(),
    status = CASE WHEN hosts.status = 'unreachable' THEN 'online' ELSE hosts.status END
FROM prev
WHERE hosts.id = prev.id
RETURNING prev.status AS previous_status, hosts.status, hosts.address, hosts.type;

-- name: SetHostStatus :execrows
UPDATE hosts SET status = @status WHERE id = @id;

-- name: MarkSilentHostsUnreachable :many
-- Online hosts whose last heartbeat is older than heartbeat_before become unreachable.
UPDATE hosts SET status = 'unreachable'
WHERE status = 'online' AND last_heartbeat_at < @heartbeat_before::timestamptz
RETURNING id;

-- name: DeleteHost :execrows
DELETE FROM hosts WHERE id = @id;

-- name: AddHostTag :execrows
UPDATE hosts SET tags = array_append(tags, @tag::text) WHERE id = @id AND NOT (@tag::text = ANY (tags));

-- name: RemoveHostTag :execrows
UPDATE hosts SET tags = array_remove(tags, @tag::text) WHERE id = @id AND @tag::text = ANY (tags);

-- name: ListSchedulableHosts :many
-- Online hosts with an address of one type (and, for byoc, one team), with
-- what their capsules reserve: CPU and memory of live capsules, disk of every
-- capsule not stopped (paused ones keep their disk). Warm pools count as memory
-- (docs/api.md, "Warm pools"): what the control plane asks of the host (each
-- template's pool_size capsules: every pooled template without a host on every
-- regular host, a snapshot template's on its host) or, when the host's pool
-- report is fresh (reported after pools_fresh_after), what it reports if more
-- (its own -pool flag's pools included; a pool set moments ago and not
-- reported yet still counts).
SELECT sqlc.embed(hosts),
       coalesce(sum(c.vcpus) FILTER (WHERE c.status IN ('pending', 'starting', 'running', 'missing')), 0)::int AS reserved_vcpus,
       (coalesce(sum(c.memory_mb) FILTER (WHERE c.status IN ('pending', 'starting', 'running', 'missing')), 0)
        + greatest(
            (SELECT coalesce(sum(t.pool_size * coalesce(t.memory_mb, 512)), 0) FROM templates t
             WHERE t.pool_size > 0 AND (t.host_id = hosts.id OR (t.host_id IS NULL AND hosts.type = 'regular'))),
            (SELECT coalesce(sum(hp.size * hp.memory_mb), 0) FROM host_pools hp
             WHERE hp.host_id = hosts.id AND hosts.pools_reported_at >= @pools_fresh_after::timestamptz)))::int AS reserved_memory_mb,
       coalesce(sum(c.disk_mb), 0)::bigint AS reserved_disk_mb
FROM hosts
LEFT JOIN capsules c ON c.host_id = hosts.id AND c.status NOT IN ('stopped', 'error')
WHERE hosts.status = 'online' AND hosts.address IS NOT NULL AND hosts.type = @type
  AND (sqlc.narg(team_id)::uuid IS NULL OR hosts.team_id = sqlc.narg(team_id))
GROUP BY hosts.id
ORDER BY hosts.id;
