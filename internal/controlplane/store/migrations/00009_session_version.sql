-- users.session_version ends a user's sessions: user JWTs carry the version they were issued
-- under (claim sv) and are refused once it changed (a password change or reset bumps it).

-- +goose Up
ALTER TABLE users ADD COLUMN session_version integer NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE users DROP COLUMN session_version;
