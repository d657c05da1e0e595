-- Warm pool size of a template (docs/api.md, "Warm pools"): how many capsules of it each host keeps
-- booted ahead of creates. Set by PUT /v1/admin/templates/{name}/pool and pushed to the agents.

-- +goose Up
ALTER TABLE templates ADD COLUMN pool_size integer NOT NULL DEFAULT 0 CHECK (pool_size BETWEEN 0 AND 64);

-- +goose Down
ALTER TABLE templates DROP COLUMN pool_size;
