-- Queries of the accounts API (internal/controlplane/accounts) beyond the shared ones.

-- name: GetOneTimeTokenByHash :one
-- A token of this kind whether used or expired (tells "already activated" from "unknown").
SELECT * FROM one_time_tokens WHERE token_hash = @token_hash AND kind = @kind;

-- name: ListOwnedTeamIDs :many
-- The live teams a user owns.
SELECT t.id FROM teams t JOIN team_members m ON m.team_id = t.id
WHERE m.user_id = @user_id AND m.role = 'owner' AND t.deleted_at IS NULL
ORDER BY t.created_at, t.id;

-- name: ListSoleOwnedTeamIDs :many
-- The live teams a user owns that have no other member.
SELECT t.id FROM teams t JOIN team_members m ON m.team_id = t.id
WHERE m.user_id = @user_id AND m.role = 'owner' AND t.deleted_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM team_members x WHERE x.team_id = t.id AND x.user_id <> @user_id)
ORDER BY t.created_at, t.id;

-- name: RemoveUserMemberships :execrows
-- Removes a user from every team it does not own (account deletion).
DELETE FROM team_members WHERE user_id = @user_id AND role <> 'owner';

-- name: DeleteChannelsByTeam :execrows
DELETE FROM channels WHERE team_id = @team_id;

-- name: DeleteTeamCapsuleMetrics :execrows
DELETE FROM capsule_metrics WHERE capsule_id IN (SELECT id FROM capsules WHERE team_id = @team_id);

-- name: DeleteTeamStatsSamples :execrows
DELETE FROM team_stats_samples WHERE team_id = @team_id;

-- name: GetTeamMemberInfo :one
-- One member of a live team with the user's name and email.
SELECT u.id AS user_id, u.name, u.email, m.role, m.joined_at
FROM team_members m JOIN users u ON u.id = m.user_id JOIN teams t ON t.id = m.team_id
WHERE m.team_id = @team_id AND m.user_id = @user_id AND t.deleted_at IS NULL;
