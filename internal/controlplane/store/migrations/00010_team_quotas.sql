-- Per-team quota overrides (docs/security.md, "Quotas"): a NULL limit takes the platform default
-- (wrenn-cp --quota-* flags); 0 is unlimited.

-- +goose Up
CREATE TABLE team_quotas (
    team_id        uuid        PRIMARY KEY REFERENCES teams (id) ON DELETE CASCADE,
    capsules       integer     CHECK (capsules >= 0),
    vcpus          integer     CHECK (vcpus >= 0),
    memory_mb      integer     CHECK (memory_mb >= 0),
    paused_disk_mb integer     CHECK (paused_disk_mb >= 0),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE team_quotas;
