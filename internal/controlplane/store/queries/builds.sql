-- name: CreateBuild :one
INSERT INTO builds (name, base_template, recipe, healthcheck, vcpus, memory_mb, skip_pre_post, total_steps, created_by)
VALUES (@name, @base_template, @recipe, sqlc.narg(healthcheck), @vcpus, @memory_mb, @skip_pre_post, @total_steps,
        sqlc.narg(created_by))
RETURNING *;

-- name: GetBuild :one
SELECT * FROM builds WHERE id = @id;

-- name: ListBuilds :many
SELECT * FROM builds ORDER BY created_at DESC, id DESC;

-- name: PutBuildArchive :exec
INSERT INTO build_archives (build_id, data) VALUES (@build_id, @data)
ON CONFLICT (build_id) DO UPDATE SET data = excluded.data;

-- name: GetBuildArchive :one
SELECT data FROM build_archives WHERE build_id = @build_id;

-- name: DeleteBuildArchive :execrows
DELETE FROM build_archives WHERE build_id = @build_id;
