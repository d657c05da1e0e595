-- name: DeleteHostPools :exec
-- Forgets a host's pool report (its next report replaces it).
DELETE FROM host_pools WHERE host_id = @host_id;

-- name: InsertHostPool :exec
INSERT INTO host_pools (host_id, team_id, template_id, size, ready, vcpus, memory_mb, disk_mb, allow_internet, hits, misses)
VALUES (@host_id, @team_id, @template_id, @size, @ready, @vcpus, @memory_mb, @disk_mb, @allow_internet, @hits, @misses);

-- name: SetHostPoolsReported :exec
-- Records that the host's current heartbeat carried a pool report (reported) or not.
UPDATE hosts SET pools_reported_at = CASE WHEN @reported::boolean THEN now() END WHERE id = @id;

-- name: ListHostPools :many
SELECT * FROM host_pools WHERE host_id = @host_id ORDER BY team_id, template_id;

-- name: ListPoolTemplatesForHost :many
-- The templates whose warm pool a host should keep (docs/api.md, "Warm pools"): every template with a
-- pool, the ones without a host (the built-in images and image templates) on regular hosts, a
-- snapshot template on the host holding its files.
SELECT * FROM templates
WHERE pool_size > 0 AND (host_id = @host_id OR (host_id IS NULL AND @host_type::text = 'regular'))
ORDER BY team_id, name;

-- name: SumReadyPools :many
-- Ready pool members per pool key over the online hosts whose report is fresh (reported after
-- fresh_after).
SELECT hp.team_id, hp.template_id, sum(hp.ready)::int AS ready
FROM host_pools hp
JOIN hosts h ON h.id = hp.host_id
WHERE h.status = 'online' AND h.pools_reported_at >= @fresh_after::timestamptz
GROUP BY hp.team_id, hp.template_id
ORDER BY hp.team_id, hp.template_id;

-- name: ListReadyPoolHosts :many
-- Online hosts with a fresh report of at least one ready member in the pool of one template and shape.
SELECT hp.host_id
FROM host_pools hp
JOIN hosts h ON h.id = hp.host_id
WHERE h.status = 'online' AND h.pools_reported_at >= @fresh_after::timestamptz
  AND hp.team_id = @team_id AND hp.template_id = @template_id AND hp.ready > 0
  AND hp.vcpus = @vcpus AND hp.memory_mb = @memory_mb AND hp.disk_mb = @disk_mb AND hp.allow_internet = @allow_internet
ORDER BY hp.host_id;
