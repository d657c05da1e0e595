-- name: CreateCapsule :one
-- Inserts a pending capsule; default_user/default_env are what it starts with (its template's, with its own
-- env_vars and fallback_user applied, kept apart for resumes). id: NULL = a random
-- one; envd_token and traffic_token (secure capsules) are sealed with the id (docs/security.md).
INSERT INTO capsules (id, team_id, template_id, template_name, host_id, vcpus, memory_mb, disk_mb,
                      timeout_sec, allow_internet, default_user, default_env, envd_token, secure, traffic_token,
                      env_vars, fallback_user)
VALUES (COALESCE(sqlc.narg(id)::uuid, gen_random_uuid()), @team_id, sqlc.narg(template_id), @template_name,
        sqlc.narg(host_id), @vcpus, @memory_mb, @disk_mb, @timeout_sec, @allow_internet, @default_user,
        @default_env, sqlc.narg(envd_token), @secure, sqlc.narg(traffic_token), @env_vars,
        sqlc.narg(fallback_user))
RETURNING *;

-- name: GetCapsule :one
-- A capsule of one team (other teams' capsules are not found).
SELECT * FROM capsules WHERE team_id = @team_id AND id = @id;

-- name: GetCapsuleByID :one
SELECT * FROM capsules WHERE id = @id;

-- name: ListCapsulesByTeam :many
-- Newest first, without stopped and errored capsules.
SELECT * FROM capsules
WHERE team_id = @team_id AND status NOT IN ('stopped', 'error')
ORDER BY created_at DESC, id;

-- name: ListCapsulesByHost :many
-- Capsules placed on a host that are not stopped or errored.
SELECT * FROM capsules
WHERE host_id = @host_id::uuid AND status NOT IN ('stopped', 'error')
ORDER BY created_at, id;

-- name: SetCapsuleHost :one
UPDATE capsules SET host_id = @host_id WHERE id = @id RETURNING *;

-- name: UpdateCapsuleStatus :one
-- Moves a capsule to status when its current status is one of from_statuses
-- (no row: not found or in another state). started_at is stamped on entering
-- running, stopped_at on entering stopped or error.
UPDATE capsules
SET status = @status,
    started_at = CASE WHEN @status::text = 'running' AND status <> 'running' THEN now() ELSE started_at END,
    stopped_at = CASE WHEN @status::text IN ('stopped', 'error') THEN coalesce(stopped_at, now()) ELSE stopped_at END
WHERE id = @id AND status = ANY (@from_statuses::text[])
RETURNING *;

-- name: SetCapsuleRunning :one
-- Records a successful create or resume on a host, from one of from_statuses.
UPDATE capsules
SET status = 'running',
    host_id = @host_id,
    host_ip = sqlc.narg(host_ip),
    metadata = @metadata,
    started_at = now(),
    last_active_at = now()
WHERE id = @id AND status = ANY (@from_statuses::text[])
RETURNING *;

-- name: TouchCapsule :execrows
-- Marks activity (exec, files, ping, …) on a running capsule.
UPDATE capsules SET last_active_at = now() WHERE id = @id AND status = 'running';

-- name: MarkHostCapsulesMissing :many
-- A host went silent: its pending and running capsules become missing.
UPDATE capsules SET status = 'missing'
WHERE host_id = @host_id::uuid AND status IN ('pending', 'running')
RETURNING id;

-- name: TeamCapsuleUsage :one
-- Current reservation of a team's running capsules (team stats "current").
SELECT count(*)::int AS running_count,
       coalesce(sum(vcpus), 0)::int AS vcpus,
       coalesce(sum(memory_mb), 0)::int AS memory_mb
FROM capsules WHERE team_id = @team_id AND status = 'running';

-- name: ListCapsulesForTemplate :many
SELECT * FROM capsules WHERE template_id = @template_id::uuid AND status NOT IN ('stopped', 'error')
ORDER BY created_at, id;

-- name: MoveCapsuleHost :execrows
-- A capsule still being created goes to another host (its first host's agent
-- could not be reached).
UPDATE capsules SET host_id = @host_id WHERE id = @id AND status = 'pending';
