-- name: CreateAPIKey :one
INSERT INTO api_keys (team_id, name, key_hash, key_prefix, created_by)
VALUES (@team_id, @name, @key_hash, @key_prefix, sqlc.narg(created_by))
RETURNING *;

-- name: GetAPIKeyByHash :one
-- The key presented in X-API-Key, by the SHA-256 hex of the secret; keys of deleted teams never match.
SELECT api_keys.* FROM api_keys JOIN teams ON teams.id = api_keys.team_id
WHERE api_keys.key_hash = @key_hash AND teams.deleted_at IS NULL;

-- name: ListAPIKeysByTeam :many
SELECT sqlc.embed(api_keys), users.email AS creator_email
FROM api_keys LEFT JOIN users ON users.id = api_keys.created_by
WHERE api_keys.team_id = @team_id
ORDER BY api_keys.created_at, api_keys.id;

-- name: DeleteAPIKey :execrows
DELETE FROM api_keys WHERE team_id = @team_id AND id = @id;

-- name: DeleteAPIKeysCreatedBy :execrows
-- Revokes every key a user created (the user was deactivated or deleted).
DELETE FROM api_keys WHERE created_by = @user_id;

-- name: DeleteTeamAPIKeysCreatedBy :execrows
-- Revokes the keys a user created in a team (the user left or was removed).
DELETE FROM api_keys WHERE team_id = @team_id AND created_by = @user_id;

-- name: TouchAPIKey :exec
UPDATE api_keys SET last_used_at = now() WHERE id = @id;

-- name: DeleteAPIKeysByTeam :execrows
DELETE FROM api_keys WHERE team_id = @team_id;

-- name: DeleteAPIKeysOfTeamsOwnedBy :execrows
-- Used when an admin deactivates a user.
DELETE FROM api_keys
WHERE team_id IN (SELECT team_id FROM team_members WHERE user_id = @user_id AND role = 'owner');

-- name: UseAPIKey :one
-- The key presented in X-API-Key (by the SHA-256 hex of the secret), recording its use in the same
-- statement; keys of deleted teams never match.
UPDATE api_keys SET last_used_at = now()
FROM teams
WHERE api_keys.key_hash = @key_hash AND teams.id = api_keys.team_id AND teams.deleted_at IS NULL
RETURNING api_keys.*;
