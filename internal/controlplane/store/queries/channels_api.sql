-- name: InsertChannel :one
-- CreateChannel with a caller-chosen id (the sealed config is bound to it).
INSERT INTO channels (id, team_id, name, provider, config, events)
VALUES (@id, @team_id, @name, @provider, @config, coalesce(@events::text[], '{}'))
RETURNING *;

-- name: UpdateChannel :one
-- Renames and/or resubscribes channel id of team_id; a NULL argument keeps the column.
UPDATE channels
SET name = coalesce(sqlc.narg(name)::text, name),
    events = coalesce(sqlc.narg(events)::text[], events)
WHERE team_id = @team_id AND id = @id
RETURNING *;

-- name: UpdateChannelConfig :one
UPDATE channels SET config = @config WHERE team_id = @team_id AND id = @id
RETURNING *;

-- name: GetChannelByID :one
-- A channel whatever its team (the notification dispatcher).
SELECT * FROM channels WHERE id = @id;

-- name: CountJobsByStatus :one
-- Jobs of queue by status (tests and diagnostics).
SELECT count(*) FILTER (WHERE status = 'pending')::bigint AS pending,
       count(*) FILTER (WHERE status = 'running')::bigint AS running,
       count(*) FILTER (WHERE status = 'done')::bigint AS done,
       count(*) FILTER (WHERE status = 'failed')::bigint AS failed
FROM jobs WHERE queue = @queue;

-- name: DeleteFinishedJobsOfQueue :execrows
-- Forgets the done and failed jobs of one queue that finished before finished_before.
DELETE FROM jobs WHERE queue = @queue AND status IN ('done', 'failed') AND finished_at < @finished_before::timestamptz;
