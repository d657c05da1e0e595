-- name: EnqueueJob :one
INSERT INTO jobs (queue, payload, run_at, max_attempts)
VALUES (@queue, coalesce(@payload::jsonb, '{}'), coalesce(sqlc.narg(run_at)::timestamptz, now()), @max_attempts)
RETURNING *;

-- name: ClaimJob :one
-- Takes the oldest due job of a queue for worker, leased for lease_seconds;
-- concurrent claimers never get the same job (SKIP LOCKED). No row: nothing due.
UPDATE jobs
SET status = 'running',
    attempts = attempts + 1,
    locked_by = @worker::text,
    locked_until = now() + make_interval(secs => @lease_seconds::int)
WHERE id = (
    SELECT j.id FROM jobs j
    WHERE j.queue = @queue AND j.status = 'pending' AND j.run_at <= now()
    ORDER BY j.run_at, j.id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING *;

-- name: CompleteJob :execrows
-- Marks a job done; 0 rows when the worker no longer holds it (lease reaped).
UPDATE jobs SET status = 'done', locked_by = NULL, locked_until = NULL, finished_at = now(), last_error = NULL
WHERE id = @id AND status = 'running' AND locked_by = @worker::text;

-- name: FailJob :one
-- Records a failed attempt: retried at retry_at, or failed for good once max_attempts are used.
UPDATE jobs
SET status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END,
    run_at = @retry_at,
    last_error = @last_error::text,
    locked_by = NULL,
    locked_until = NULL,
    finished_at = CASE WHEN attempts >= max_attempts THEN now() END
WHERE id = @id AND status = 'running' AND locked_by = @worker::text
RETURNING *;

-- name: ReapExpiredJobs :execrows
-- Jobs whose worker's lease ran out go back to pending (or fail when out of attempts).
UPDATE jobs
SET status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END,
    last_error = 'lease expired (worker ' || locked_by || ')',
    locked_by = NULL,
    locked_until = NULL,
    finished_at = CASE WHEN attempts >= max_attempts THEN now() END
WHERE status = 'running' AND locked_until < now();

-- name: GetJob :one
SELECT * FROM jobs WHERE id = @id;

-- name: DeleteFinishedJobs :execrows
DELETE FROM jobs WHERE status IN ('done', 'failed') AND finished_at < @finished_before::timestamptz;
