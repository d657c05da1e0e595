-- Each capsule's envd access token (docs/security.md), sealed with the
-- control plane's capsule key (AES-256-GCM, the capsule id as additional
-- data). NULL for capsules created before tokens existed.

-- +goose Up
ALTER TABLE capsules ADD COLUMN envd_token bytea;

-- +goose Down
ALTER TABLE capsules DROP COLUMN envd_token;
