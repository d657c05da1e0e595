-- Warm pools as the agents report them (docs/api.md, "Warm pools"; docs/agent.md, "Warm pools"): each
-- heartbeat of an agent that reports its pools replaces its host's rows. A pool is keyed as the agent
-- keys it: team_id '' and the image name for the built-in images, else the owning team's and the
-- template's ids. hosts.pools_reported_at is the time of the last heartbeat that carried a report (NULL:
-- the host's agent does not report, or its last heartbeat did not); placement and the template JSON
-- use a host's rows only while that is recent.

-- +goose Up
ALTER TABLE hosts ADD COLUMN pools_reported_at timestamptz;

CREATE TABLE host_pools (
    host_id        uuid        NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    team_id        text        NOT NULL DEFAULT '',
    template_id    text        NOT NULL CHECK (template_id <> ''),
    size           integer     NOT NULL CHECK (size BETWEEN 0 AND 64),
    ready          integer     NOT NULL CHECK (ready BETWEEN 0 AND 64),
    vcpus          integer     NOT NULL CHECK (vcpus >= 0),
    memory_mb      integer     NOT NULL CHECK (memory_mb >= 0),
    disk_mb        integer     NOT NULL CHECK (disk_mb >= 0),
    allow_internet boolean     NOT NULL,
    hits           bigint      NOT NULL DEFAULT 0 CHECK (hits >= 0),
    misses         bigint      NOT NULL DEFAULT 0 CHECK (misses >= 0),
    reported_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (host_id, team_id, template_id)
);

-- +goose Down
DROP TABLE host_pools;
ALTER TABLE hosts DROP COLUMN pools_reported_at;
