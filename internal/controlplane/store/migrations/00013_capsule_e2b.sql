-- What the E2B-compatible API (docs/e2b.md) keeps per capsule: the caller's metadata (filterable in
-- listings), the absolute end of its lifetime (end_at; NULL = none, as for capsules made through
-- /v1) and what happens then (on_timeout: kill, or pause with E2B's autoPause). A capsule's own env vars
-- (env_vars, E2B's envVars) and fallback_user (E2B's "user" where the template chose no user) are kept
-- apart from the template's defaults, so that every resume applies them over the template's current ones.

-- +goose Up
ALTER TABLE capsules
    ADD COLUMN user_metadata jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(user_metadata) = 'object'
        AND NOT jsonb_path_exists(user_metadata, '$.* ? (@.type() != "string")')),
    ADD COLUMN end_at        timestamptz,
    ADD COLUMN on_timeout    text NOT NULL DEFAULT 'kill' CHECK (on_timeout IN ('kill', 'pause')),
    ADD COLUMN env_vars      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(env_vars) = 'object'
        AND NOT jsonb_path_exists(env_vars, '$.* ? (@.type() != "string")')),
    ADD COLUMN fallback_user text CHECK (fallback_user <> '');
CREATE INDEX capsules_end_at_idx ON capsules (end_at) WHERE status = 'running' AND end_at IS NOT NULL;

-- +goose Down
DROP INDEX capsules_end_at_idx;
ALTER TABLE capsules DROP COLUMN fallback_user, DROP COLUMN env_vars, DROP COLUMN on_timeout, DROP COLUMN end_at, DROP COLUMN user_metadata;
