-- name: CreateBuild :one
INSERT INTO builds (name, base_template, recipe, healthcheck, vcpus, memory_mb, skip_pre_post, total_steps, created_by)
VALUES (@name, @base_template, @recipe, sqlc.narg(healthcheck), @vcpus, @memory_mb, @skip_pre_post, @total_steps,
        sqlc.narg(created_by))
RETURNING *;

-- name: GetBuild :one
SELECT * FROM builds WHERE id = @id;

-- name: ListBuilds :many
SELECT * FROM builds ORDER BY created_at DESC, id DESC;

-- name: PutBuildArchiveChunk :exec
-- One chunk (≤ 1 MiB) of a build's archive; seq from 0.
INSERT INTO build_archives (build_id, seq, data) VALUES (@build_id, @seq, @data);

-- name: SetBuildArchiveSize :exec
UPDATE builds SET archive_bytes = @archive_bytes WHERE id = @id;

-- name: GetBuildArchiveChunk :one
SELECT data FROM build_archives WHERE build_id = @build_id AND seq = @seq;

-- name: DeleteBuildArchive :execrows
DELETE FROM build_archives WHERE build_id = @build_id;

-- name: ClaimBuild :one
-- The oldest pending build becomes running under a lease of the claiming control plane; concurrent
-- claims skip each other's rows.
UPDATE builds SET status = 'running', started_at = now(), lease_until = now() + make_interval(secs => @lease_sec::float8)
WHERE id = (
    SELECT id FROM builds WHERE status = 'pending' ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
)
RETURNING *;

-- name: RenewBuildLease :execrows
-- 0 rows: the build is no longer running (cancelled, or failed by another control plane).
UPDATE builds SET lease_until = now() + make_interval(secs => @lease_sec::float8)
WHERE id = @id AND status = 'running';

-- name: SetBuildCapsule :execrows
UPDATE builds SET capsule_id = @capsule_id, host_id = @host_id WHERE id = @id AND status = 'running';

-- name: AddBuildStep :execrows
-- Records a finished step of a running build.
UPDATE builds SET current_step = @current_step, logs = logs || jsonb_build_array(@entry::jsonb)
WHERE id = @id AND status = 'running';

-- name: SucceedBuild :execrows
UPDATE builds SET status = 'success', completed_at = now(), lease_until = NULL, template_id = @template_id,
                  default_user = @default_user, default_env = @default_env
WHERE id = @id AND status = 'running';

-- name: FailBuild :execrows
-- A cancelled build stays cancelled.
UPDATE builds SET status = 'failed', completed_at = now(), lease_until = NULL, error = @reason
WHERE id = @id AND status IN ('pending', 'running');

-- name: CancelBuild :one
UPDATE builds SET status = 'cancelled', completed_at = now(), lease_until = NULL
WHERE id = @id AND status IN ('pending', 'running')
RETURNING *;

-- name: FailExpiredBuilds :many
-- Running builds whose control plane stopped renewing their lease: failed, returned so that their
-- capsules are destroyed.
UPDATE builds SET status = 'failed', completed_at = now(), lease_until = NULL, error = @reason
WHERE status = 'running' AND lease_until < now()
RETURNING *;

-- name: ListFinishedBuildsWithArchive :many
-- Builds that ended with an archive still stored (their control plane died before deleting it).
SELECT DISTINCT b.id FROM builds b JOIN build_archives a ON a.build_id = b.id
WHERE b.status IN ('success', 'failed', 'cancelled');
