-- name: InsertCapsuleMetrics :execrows
-- Stores one tier's points (parallel arrays of equal length); points already stored are replaced.
INSERT INTO capsule_metrics (capsule_id, tier, ts, cpu_pct, mem_bytes, disk_bytes)
SELECT @capsule_id::uuid, @tier::text,
       unnest(@ts::timestamptz[]), unnest(@cpu_pct::float8[]), unnest(@mem_bytes::bigint[]), unnest(@disk_bytes::bigint[])
ON CONFLICT (capsule_id, tier, ts) DO UPDATE
SET cpu_pct = excluded.cpu_pct, mem_bytes = excluded.mem_bytes, disk_bytes = excluded.disk_bytes;

-- name: ListCapsuleMetrics :many
SELECT ts, cpu_pct, mem_bytes, disk_bytes FROM capsule_metrics
WHERE capsule_id = @capsule_id AND tier = @tier AND ts >= @since
ORDER BY ts;

-- name: DeleteCapsuleMetrics :execrows
DELETE FROM capsule_metrics WHERE capsule_id = @capsule_id;

-- name: SampleTeamStats :execrows
-- One sample at ts for every team with running capsules (teams without one have zeros implicitly).
INSERT INTO team_stats_samples (team_id, ts, running_count, vcpus, memory_mb)
SELECT team_id, @ts, count(*), sum(vcpus), sum(memory_mb)
FROM capsules WHERE status = 'running'
GROUP BY team_id
ON CONFLICT (team_id, ts) DO NOTHING;

-- name: ListTeamStats :many
SELECT ts, running_count, vcpus, memory_mb FROM team_stats_samples
WHERE team_id = @team_id AND ts >= @since
ORDER BY ts;

-- name: DeleteTeamStatsBefore :execrows
DELETE FROM team_stats_samples WHERE ts < @before;
