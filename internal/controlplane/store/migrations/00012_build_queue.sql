-- Template builds (docs/data-model.md, "builds"): the uploaded archive is stored in chunks of at most
-- 1 MiB, so that neither the upload nor the worker holds it whole in memory; a running build carries
-- the lease of the control plane working on it, renewed while it works, so that another control plane
-- fails the build when the lease runs out (its control plane died).

-- +goose Up
DROP TABLE build_archives;
CREATE TABLE build_archives (
    build_id uuid    NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    seq      integer NOT NULL CHECK (seq >= 0),
    data     bytea   NOT NULL CHECK (length(data) BETWEEN 1 AND 1048576),
    PRIMARY KEY (build_id, seq)
);
ALTER TABLE builds
    ADD COLUMN archive_bytes bigint      NOT NULL DEFAULT 0 CHECK (archive_bytes BETWEEN 0 AND 104857600),
    ADD COLUMN lease_until   timestamptz,
    ADD CONSTRAINT builds_running_lease CHECK ((status = 'running') = (lease_until IS NOT NULL));
CREATE INDEX builds_running_idx ON builds (lease_until) WHERE status = 'running';

-- +goose Down
DROP INDEX builds_running_idx;
ALTER TABLE builds DROP CONSTRAINT builds_running_lease, DROP COLUMN lease_until, DROP COLUMN archive_bytes;
DROP TABLE build_archives;
CREATE TABLE build_archives (
    build_id uuid  PRIMARY KEY REFERENCES builds (id) ON DELETE CASCADE,
    data     bytea NOT NULL CHECK (length(data) <= 104857600)
);
