-- name: CreateHostRegistrationToken :one
INSERT INTO host_registration_tokens (host_id, token_hash, created_by, expires_at)
VALUES (@host_id, @token_hash, sqlc.narg(created_by), now() + make_interval(secs => @ttl_seconds::int))
RETURNING *;

-- name: ConsumeHostRegistrationToken :one
-- Uses a registration token once: no row when it is unknown, used or expired.
UPDATE host_registration_tokens SET used_at = now()
WHERE token_hash = @token_hash AND used_at IS NULL AND expires_at > now()
RETURNING *;

-- name: DeleteUnusedHostRegistrationTokens :execrows
DELETE FROM host_registration_tokens WHERE host_id = @host_id AND used_at IS NULL;

-- name: CreateHostRefreshToken :one
INSERT INTO host_refresh_tokens (host_id, token_hash, expires_at)
VALUES (@host_id, @token_hash, now() + make_interval(secs => @ttl_seconds::int))
RETURNING *;

-- name: RotateHostRefreshToken :one
-- Revokes a valid refresh token and issues its successor for the same host in
-- one statement: no row when the old token is unknown, revoked or expired.
WITH old AS (
    UPDATE host_refresh_tokens SET revoked_at = now()
    WHERE host_refresh_tokens.token_hash = @old_token_hash
      AND host_refresh_tokens.revoked_at IS NULL
      AND host_refresh_tokens.expires_at > now()
    RETURNING host_refresh_tokens.host_id
)
INSERT INTO host_refresh_tokens (host_id, token_hash, expires_at)
SELECT old.host_id, @new_token_hash, now() + make_interval(secs => @ttl_seconds::int) FROM old
RETURNING *;

-- name: RevokeHostRefreshTokens :execrows
UPDATE host_refresh_tokens SET revoked_at = now() WHERE host_id = @host_id AND revoked_at IS NULL;

-- name: GetInternalCA :one
SELECT * FROM internal_ca;

-- name: InsertInternalCA :execrows
-- Stores the CA unless another control plane stored one first (0 rows); read it back with GetInternalCA.
INSERT INTO internal_ca (cert_pem, key_pem) VALUES (@cert_pem, @key_pem) ON CONFLICT (id) DO NOTHING;
