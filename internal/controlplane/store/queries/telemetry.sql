-- Queries of the control plane's Prometheus collectors (internal/controlplane/metrics).

-- name: CountLiveCapsulesByStatus :many
-- Capsules that are not stopped or errored, by status.
SELECT status, count(*)::int AS count
FROM capsules
WHERE status NOT IN ('stopped', 'error')
GROUP BY status;

-- name: CountLiveCapsulesByTeamStatus :many
-- Capsules that are not stopped or errored, by team and status.
SELECT team_id, status, count(*)::int AS count
FROM capsules
WHERE status NOT IN ('stopped', 'error')
GROUP BY team_id, status;

-- name: ListHostCapacity :many
-- Every host with its reported resources and what its capsules reserve (as scheduling counts them:
-- CPU and memory of live capsules, disk of every capsule not stopped).
SELECT hosts.id, hosts.type, hosts.status, hosts.cpu_cores, hosts.memory_mb, hosts.disk_gb,
       coalesce(sum(c.vcpus) FILTER (WHERE c.status IN ('pending', 'starting', 'running', 'missing')), 0)::int AS reserved_vcpus,
       coalesce(sum(c.memory_mb) FILTER (WHERE c.status IN ('pending', 'starting', 'running', 'missing')), 0)::bigint AS reserved_memory_mb,
       coalesce(sum(c.disk_mb), 0)::bigint AS reserved_disk_mb
FROM hosts
LEFT JOIN capsules c ON c.host_id = hosts.id AND c.status NOT IN ('stopped', 'error')
GROUP BY hosts.id
ORDER BY hosts.id;
