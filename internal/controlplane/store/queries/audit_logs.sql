-- name: InsertAuditLog :one
INSERT INTO audit_logs (team_id, actor_type, actor_id, actor_name, resource_type, resource_id, action, scope, status, metadata)
VALUES (@team_id, @actor_type, sqlc.narg(actor_id), sqlc.narg(actor_name), @resource_type, sqlc.narg(resource_id),
        @action, @scope, @status, coalesce(@metadata::jsonb, '{}'))
RETURNING *;

-- name: ListAuditLogs :many
-- Newest first, keyset-paged by (created_at, id) < (before, before_id).
-- team_id NULL = all teams (admin). include_admin adds scope 'admin' entries.
-- An empty resource_types matches every type; action NULL matches every action.
SELECT * FROM audit_logs
WHERE (sqlc.narg(team_id)::uuid IS NULL OR team_id = sqlc.narg(team_id))
  AND (@include_admin::bool OR scope = 'team')
  AND (coalesce(cardinality(@resource_types::text[]), 0) = 0 OR resource_type = ANY (@resource_types::text[]))
  AND (sqlc.narg(action)::text IS NULL OR action = sqlc.narg(action))
  AND (sqlc.narg(before)::timestamptz IS NULL
       OR (created_at, id) < (sqlc.narg(before), coalesce(sqlc.narg(before_id)::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid)))
ORDER BY created_at DESC, id DESC
LIMIT @max_results;
