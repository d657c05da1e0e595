-- Secure capsules (docs/security.md, "Port proxy"): every proxied port of a secure capsule needs its
-- traffic access token, sealed like envd_token (AES-256-GCM with the control plane's capsule key, the
-- capsule id as additional data). traffic_token is NULL when secure is false.

-- +goose Up
ALTER TABLE capsules ADD COLUMN secure boolean NOT NULL DEFAULT false;
ALTER TABLE capsules ADD COLUMN traffic_token bytea;
ALTER TABLE capsules ADD CONSTRAINT capsules_secure_token CHECK (NOT secure OR traffic_token IS NOT NULL);

-- +goose Down
ALTER TABLE capsules DROP CONSTRAINT capsules_secure_token;
ALTER TABLE capsules DROP COLUMN traffic_token;
ALTER TABLE capsules DROP COLUMN secure;
