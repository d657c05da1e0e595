-- name: CreateTemplate :one
INSERT INTO templates (team_id, name, type, vcpus, memory_mb, size_bytes, default_user, default_env, metadata, created_by)
VALUES (@team_id, @name, @type, sqlc.narg(vcpus), sqlc.narg(memory_mb), @size_bytes, @default_user, @default_env,
        @metadata, sqlc.narg(created_by))
RETURNING *;

-- name: GetTemplate :one
-- A template owned by this team (platform templates only with the platform team id).
SELECT * FROM templates WHERE team_id = @team_id AND name = @name;

-- name: GetTemplateByID :one
SELECT * FROM templates WHERE id = @id;

-- name: ResolveTemplate :one
-- The template a capsule of this team gets for a name: the team's own first, then the platform's.
SELECT * FROM templates
WHERE name = @name AND team_id IN (@team_id, '00000000-0000-0000-0000-000000000000'::uuid)
ORDER BY platform
LIMIT 1;

-- name: ListTemplatesForTeam :many
-- The team's and the platform's templates, optionally of one type.
SELECT * FROM templates
WHERE team_id IN (@team_id, '00000000-0000-0000-0000-000000000000'::uuid)
  AND (sqlc.narg(type)::text IS NULL OR type = sqlc.narg(type))
ORDER BY platform DESC, created_at, id;

-- name: ListAllTemplates :many
SELECT * FROM templates ORDER BY team_id, created_at, id;

-- name: DeleteTemplate :one
DELETE FROM templates WHERE team_id = @team_id AND name = @name RETURNING *;

-- name: DeleteTemplatesByTeam :many
DELETE FROM templates WHERE team_id = @team_id RETURNING id;

-- name: SetTemplatePoolSize :one
UPDATE templates SET pool_size = @pool_size WHERE team_id = @team_id AND name = @name RETURNING *;
