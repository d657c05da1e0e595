-- name: SetCapsuleLifetime :one
-- Records the E2B-compatible API's settings of a capsule of a team (docs/e2b.md): its metadata, the end
-- of its lifetime and what happens then.
UPDATE capsules
SET user_metadata = @user_metadata, end_at = sqlc.narg(end_at), on_timeout = @on_timeout
WHERE team_id = @team_id AND id = @id
RETURNING *;

-- name: SetCapsuleEndAt :one
-- Moves the end of a capsule's lifetime (E2B setTimeout, connect). With extend_only the end only moves
-- later (connect on a running capsule).
UPDATE capsules
SET end_at = CASE WHEN @extend_only::bool AND end_at IS NOT NULL AND end_at > @end_at::timestamptz
                  THEN end_at ELSE @end_at::timestamptz END
WHERE team_id = @team_id AND id = @id
RETURNING *;

-- name: ListExpiredCapsules :many
-- Running capsules whose lifetime ended (E2B timeout), oldest end first.
SELECT * FROM capsules
WHERE status = 'running' AND end_at IS NOT NULL AND end_at <= now()
ORDER BY end_at, id
LIMIT 100;
