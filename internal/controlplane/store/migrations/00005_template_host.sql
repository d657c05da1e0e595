-- The host holding a template's files. Snapshot (and flattened) templates
-- live on the host whose capsule produced them, so capsules created from
-- them must be placed there. NULL: the files are on every host (platform
-- images) or the host is gone.

-- +goose Up
ALTER TABLE templates ADD COLUMN host_id uuid REFERENCES hosts (id) ON DELETE SET NULL;
CREATE INDEX templates_host_idx ON templates (host_id) WHERE host_id IS NOT NULL;

-- +goose Down
DROP INDEX templates_host_idx;
ALTER TABLE templates DROP COLUMN host_id;
