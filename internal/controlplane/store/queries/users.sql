-- name: CreateUser :one
-- Emails are stored lower-case. activated_at is set when the user is created active (bootstrap).
INSERT INTO users (email, name, password_hash, status, is_admin, activated_at)
VALUES (lower(@email::text), @name, sqlc.narg(password_hash), @status, @is_admin,
        CASE WHEN @status::text = 'active' THEN now() END)
RETURNING *;

-- name: GetUserByID :one
SELECT * FROM users WHERE id = @id;

-- name: GetUserByEmail :one
SELECT * FROM users WHERE email = lower(@email::text);

-- name: LockUserActivation :exec
-- Serializes activations inside a transaction so that exactly one user
-- becomes the first platform admin. Hold it before ActivateUserLocked (store.ActivateUser does both).
SELECT pg_advisory_xact_lock(hashtext('wrenn.users.activation'));

-- name: ActivateUserLocked :one
-- Activates an inactive user (run after LockUserActivation in the same transaction). Activation
-- never makes an admin: admins are made by the bootstrap or by another admin.
UPDATE users
SET status = 'active',
    activated_at = now()
WHERE users.id = @id AND users.status = 'inactive'
RETURNING *;

-- name: SetUserPassword :execrows
UPDATE users SET password_hash = @password_hash::text WHERE id = @id;

-- name: EndUserSessions :one
-- Bumps the session version: every user JWT issued before stops working.
UPDATE users SET session_version = session_version + 1 WHERE id = @id RETURNING *;

-- name: CountActiveAdmins :one
SELECT count(*) FROM users WHERE is_admin AND status = 'active';

-- name: SetUserName :one
UPDATE users SET name = @name WHERE id = @id RETURNING *;

-- name: SetUserStatus :one
-- deleted_at follows the status: set on the first move to deleted, cleared otherwise.
UPDATE users
SET status = @status,
    deleted_at = CASE WHEN @status::text = 'deleted' THEN coalesce(deleted_at, now()) END
WHERE id = @id
RETURNING *;

-- name: DeleteStaleInactiveUser :execrows
-- Removes an inactive signup created before created_before, so the email can sign up again.
DELETE FROM users
WHERE email = lower(@email::text) AND status = 'inactive' AND created_at < @created_before;

-- name: PurgeDeletedUsers :execrows
DELETE FROM users WHERE status = 'deleted' AND deleted_at < @deleted_before::timestamptz;

-- name: SearchActiveUsersByEmailPrefix :many
SELECT id, email FROM users
WHERE status = 'active'
  AND email LIKE replace(replace(replace(lower(@prefix::text), '\', '\\'), '%', '\%'), '_', '\_') || '%'
ORDER BY email
LIMIT @max_results;

-- name: ListUsers :many
-- Admin listing, oldest first, with team counts.
SELECT sqlc.embed(users),
       (SELECT count(*) FROM team_members m JOIN teams t ON t.id = m.team_id
        WHERE m.user_id = users.id AND t.deleted_at IS NULL) AS teams_joined,
       (SELECT count(*) FROM team_members m JOIN teams t ON t.id = m.team_id
        WHERE m.user_id = users.id AND m.role = 'owner' AND t.deleted_at IS NULL) AS teams_owned
FROM users
ORDER BY users.created_at, users.id
LIMIT @max_results OFFSET @skip;

-- name: CountUsers :one
SELECT count(*) FROM users;

-- name: CreateUserIdentity :one
INSERT INTO user_identities (user_id, provider, provider_user_id, email)
VALUES (@user_id, @provider, @provider_user_id, sqlc.narg(email))
RETURNING *;

-- name: GetUserIdentity :one
SELECT * FROM user_identities WHERE provider = @provider AND provider_user_id = @provider_user_id;

-- name: ListUserIdentities :many
SELECT * FROM user_identities WHERE user_id = @user_id ORDER BY provider;

-- name: DeleteUserIdentity :execrows
DELETE FROM user_identities WHERE user_id = @user_id AND provider = @provider;
