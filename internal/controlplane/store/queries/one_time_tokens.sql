-- name: CreateOneTimeToken :one
INSERT INTO one_time_tokens (kind, user_id, token_hash, expires_at)
VALUES (@kind, @user_id, @token_hash, now() + make_interval(secs => @ttl_seconds::int))
RETURNING *;

-- name: ConsumeOneTimeToken :one
-- Uses a token of this kind once: no row when it is unknown, used or expired.
-- Concurrent consumers of one token: exactly one gets the row.
UPDATE one_time_tokens SET used_at = now()
WHERE token_hash = @token_hash AND kind = @kind AND used_at IS NULL AND expires_at > now()
RETURNING *;

-- name: DeleteUnusedOneTimeTokens :execrows
-- Invalidates a user's outstanding tokens of one kind (before issuing a new one).
DELETE FROM one_time_tokens WHERE user_id = @user_id AND kind = @kind AND used_at IS NULL;

-- name: DeleteExpiredOneTimeTokens :execrows
DELETE FROM one_time_tokens WHERE expires_at < @expired_before;
