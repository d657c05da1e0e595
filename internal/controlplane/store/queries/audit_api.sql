-- name: InsertAuditLogNotify :one
-- InsertAuditLog that also queues one "notify" job per channel of the entry's team subscribed to
-- event, in the same statement (so in the caller's transaction). Only successful entries notify.
-- A job's payload is event_payload plus channel_id, delivery_id (stable across retries) and the
-- entry's time as RFC 3339 UTC.
WITH entry AS (
    INSERT INTO audit_logs (team_id, actor_type, actor_id, actor_name, resource_type, resource_id, action, scope, status, metadata)
    VALUES (@team_id, @actor_type, sqlc.narg(actor_id), sqlc.narg(actor_name), @resource_type, sqlc.narg(resource_id),
            @action, @scope, @status, coalesce(@metadata::jsonb, '{}'))
    RETURNING *
), notify AS (
    INSERT INTO jobs (queue, payload, max_attempts)
    SELECT @queue::text,
           @event_payload::jsonb || jsonb_build_object(
               'channel_id', c.id,
               'delivery_id', gen_random_uuid(),
               'timestamp', to_char(entry.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
           @max_attempts::int
    FROM entry
    JOIN channels c ON c.team_id = entry.team_id
    WHERE entry.status = 'success' AND @event::text = ANY (c.events)
)
SELECT * FROM entry;
