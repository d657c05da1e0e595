-- The control plane's schema: accounts, teams, keys, templates, capsules,
-- hosts and their credentials, the internal CA, builds, channels, audit log,
-- metrics, one-time tokens and the job queue. Entity ids are UUIDs; the API's
-- prefixed base-36 form (cl-…, team-…) is produced by internal/controlplane/ids.

-- +goose Up

-- +goose StatementBegin
CREATE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
-- +goose StatementEnd

-- Accounts. Emails are stored lower-case; password_hash is bcrypt, NULL for
-- accounts that sign in only through an OAuth provider.
CREATE TABLE users (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text        NOT NULL CHECK (email = lower(email) AND email LIKE '_%@_%' AND length(email) <= 254),
    name          text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    password_hash text        CHECK (password_hash <> ''),
    status        text        NOT NULL DEFAULT 'inactive' CHECK (status IN ('inactive', 'active', 'disabled', 'deleted')),
    is_admin      boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    activated_at  timestamptz,
    deleted_at    timestamptz,
    CHECK ((status = 'deleted') = (deleted_at IS NOT NULL))
);
-- text_pattern_ops serves both equality and the prefix search of /v1/users/search.
CREATE UNIQUE INDEX users_email_key ON users (email text_pattern_ops);
CREATE INDEX users_deleted_idx ON users (deleted_at) WHERE status = 'deleted';
CREATE TRIGGER users_updated_at BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Sign-in methods other than the password (OAuth).
CREATE TABLE user_identities (
    user_id          uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider         text        NOT NULL CHECK (provider ~ '^[a-z][a-z0-9_-]{0,31}$'),
    provider_user_id text        NOT NULL CHECK (provider_user_id <> ''),
    email            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, provider),
    UNIQUE (provider, provider_user_id)
);

-- Teams own capsules, keys, templates, BYOC hosts and channels. Deletion is
-- soft (deleted_at). The platform team is the all-zero UUID.
CREATE TABLE teams (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    slug       text        NOT NULL UNIQUE
                           DEFAULT substr(md5(gen_random_uuid()::text), 1, 6) || '-' || substr(md5(gen_random_uuid()::text), 1, 6)
                           CHECK (slug ~ '^[0-9a-f]{6}-[0-9a-f]{6}$'),
    is_byoc    boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CHECK (id <> '00000000-0000-0000-0000-000000000000' OR deleted_at IS NULL)
);
CREATE TRIGGER teams_updated_at BEFORE UPDATE ON teams FOR EACH ROW EXECUTE FUNCTION set_updated_at();
INSERT INTO teams (id, name, slug) VALUES ('00000000-0000-0000-0000-000000000000', 'Platform', '000000-000000');

-- Membership with a role; at most one owner per team (the API keeps exactly one).
CREATE TABLE team_members (
    team_id   uuid        NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id   uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role      text        NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, user_id)
);
CREATE UNIQUE INDEX team_members_one_owner_key ON team_members (team_id) WHERE role = 'owner';
CREATE INDEX team_members_user_idx ON team_members (user_id);

-- API keys belong to a team. Only the SHA-256 (hex) of the secret is kept.
CREATE TABLE api_keys (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id      uuid        NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 256),
    key_hash     text        NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    key_prefix   text        NOT NULL CHECK (key_prefix ~ '^wrn_[0-9a-f]{6}$'),
    created_by   uuid        REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);
CREATE INDEX api_keys_team_idx ON api_keys (team_id, created_at);

-- Hosts run capsules: 'regular' ones belong to the platform, 'byoc' ones to a team.
CREATE TABLE hosts (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    type              text        NOT NULL CHECK (type IN ('regular', 'byoc')),
    team_id           uuid        REFERENCES teams (id),
    provider          text,
    availability_zone text,
    arch              text,
    cpu_cores         integer     CHECK (cpu_cores > 0),
    memory_mb         integer     CHECK (memory_mb > 0),
    disk_gb           integer     CHECK (disk_gb > 0),
    address           text        CHECK (address <> ''),
    status            text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'online', 'offline', 'draining', 'unreachable')),
    last_heartbeat_at timestamptz,
    tags              text[]      NOT NULL DEFAULT '{}',
    created_by        uuid        REFERENCES users (id) ON DELETE SET NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((type = 'byoc') = (team_id IS NOT NULL)),
    CHECK (status = 'pending' OR address IS NOT NULL)
);
CREATE INDEX hosts_team_idx ON hosts (team_id) WHERE team_id IS NOT NULL;
CREATE INDEX hosts_status_idx ON hosts (status, last_heartbeat_at);
CREATE TRIGGER hosts_updated_at BEFORE UPDATE ON hosts FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- One-time host registration tokens (htok-): hashed, single use, 1 h.
CREATE TABLE host_registration_tokens (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    host_id    uuid        NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    token_hash text        NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    created_by uuid        REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX host_registration_tokens_host_idx ON host_registration_tokens (host_id);

-- Host refresh tokens (hrt-): hashed, 60 d, rotated (revoked + replaced) on every use.
CREATE TABLE host_refresh_tokens (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    host_id    uuid        NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    token_hash text        NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX host_refresh_tokens_host_idx ON host_refresh_tokens (host_id);

-- The internal CA that signs agents' mTLS certificates and the control
-- plane's client certificate: one row, created by the first control plane to start.
CREATE TABLE internal_ca (
    id         boolean     PRIMARY KEY DEFAULT true CHECK (id),
    cert_pem   text        NOT NULL CHECK (cert_pem LIKE '-----BEGIN CERTIFICATE-----%'),
    key_pem    text        NOT NULL CHECK (key_pem <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Templates: 'base' (filesystem) or 'snapshot' (filesystem + memory). Platform
-- templates belong to the platform team and are usable by every team.
CREATE TABLE templates (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id      uuid        NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    name         text        NOT NULL CHECK (name ~ '^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$'),
    type         text        NOT NULL CHECK (type IN ('base', 'snapshot')),
    vcpus        integer     CHECK (vcpus >= 1),
    memory_mb    integer     CHECK (memory_mb >= 128),
    size_bytes   bigint      NOT NULL DEFAULT 0 CHECK (size_bytes >= 0),
    default_user text        NOT NULL DEFAULT 'root' CHECK (default_user <> ''),
    default_env  jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(default_env) = 'object'
                                 AND NOT jsonb_path_exists(default_env, '$.* ? (@.type() != "string")')),
    metadata     jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    platform     boolean     NOT NULL GENERATED ALWAYS AS (team_id = '00000000-0000-0000-0000-000000000000') STORED,
    created_by   uuid        REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (team_id, name),
    CHECK (type <> 'snapshot' OR (vcpus IS NOT NULL AND memory_mb IS NOT NULL))
);
CREATE INDEX templates_name_idx ON templates (name);
INSERT INTO templates (id, team_id, name, type) VALUES
    ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000000', 'base', 'base');

-- Capsules. default_user/default_env are copied from the template at creation
-- so resume works after the template is deleted.
CREATE TABLE capsules (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id        uuid        NOT NULL REFERENCES teams (id),
    template_id    uuid        REFERENCES templates (id) ON DELETE SET NULL,
    template_name  text        NOT NULL CHECK (template_name <> ''),
    host_id        uuid        REFERENCES hosts (id) ON DELETE SET NULL,
    status         text        NOT NULL DEFAULT 'pending' CHECK (status IN
                                   ('pending', 'starting', 'running', 'paused', 'hibernated', 'missing', 'stopped', 'error')),
    vcpus          integer     NOT NULL CHECK (vcpus >= 1),
    memory_mb      integer     NOT NULL CHECK (memory_mb >= 128),
    disk_mb        integer     NOT NULL DEFAULT 5120 CHECK (disk_mb > 0),
    timeout_sec    integer     NOT NULL DEFAULT 0 CHECK (timeout_sec >= 0),
    allow_internet boolean     NOT NULL DEFAULT true,
    default_user   text        NOT NULL DEFAULT 'root' CHECK (default_user <> ''),
    default_env    jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(default_env) = 'object'
                                   AND NOT jsonb_path_exists(default_env, '$.* ? (@.type() != "string")')),
    host_ip        inet,
    guest_ip       inet,
    metadata       jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    last_active_at timestamptz,
    stopped_at     timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX capsules_team_live_idx ON capsules (team_id, created_at DESC) WHERE status NOT IN ('stopped', 'error');
CREATE INDEX capsules_host_live_idx ON capsules (host_id) WHERE status NOT IN ('stopped', 'error');
CREATE INDEX capsules_running_idx ON capsules (team_id) WHERE status = 'running';
CREATE TRIGGER capsules_updated_at BEFORE UPDATE ON capsules FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Metrics tiers of capsules, persisted at pause: '10m' (500 ms samples),
-- '2h' (30 s averages), '24h' (5 min averages).
CREATE TABLE capsule_metrics (
    capsule_id uuid             NOT NULL REFERENCES capsules (id) ON DELETE CASCADE,
    tier       text             NOT NULL CHECK (tier IN ('10m', '2h', '24h')),
    ts         timestamptz      NOT NULL,
    cpu_pct    double precision NOT NULL CHECK (cpu_pct >= 0),
    mem_bytes  bigint           NOT NULL CHECK (mem_bytes >= 0),
    disk_bytes bigint           NOT NULL CHECK (disk_bytes >= 0),
    PRIMARY KEY (capsule_id, tier, ts)
);

-- Team usage sampled every 10 s (kept 60 days) for /v1/capsules/stats.
CREATE TABLE team_stats_samples (
    team_id       uuid        NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    ts            timestamptz NOT NULL,
    running_count integer     NOT NULL CHECK (running_count >= 0),
    vcpus         integer     NOT NULL CHECK (vcpus >= 0),
    memory_mb     integer     NOT NULL CHECK (memory_mb >= 0),
    PRIMARY KEY (team_id, ts)
);
CREATE INDEX team_stats_samples_ts_idx ON team_stats_samples (ts);

-- Template builds (bld-); the uploaded archive lives in build_archives until the build ends.
CREATE TABLE builds (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text        NOT NULL CHECK (name ~ '^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$'),
    base_template text        NOT NULL DEFAULT 'base' CHECK (base_template <> ''),
    recipe        text[]      NOT NULL CHECK (cardinality(recipe) >= 1),
    healthcheck   text,
    vcpus         integer     NOT NULL DEFAULT 1 CHECK (vcpus >= 1),
    memory_mb     integer     NOT NULL DEFAULT 512 CHECK (memory_mb >= 128),
    skip_pre_post boolean     NOT NULL DEFAULT false,
    status        text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'success', 'failed', 'cancelled')),
    current_step  integer     NOT NULL DEFAULT 0,
    total_steps   integer     NOT NULL CHECK (total_steps >= 1),
    logs          jsonb       NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(logs) = 'array'),
    error         text,
    capsule_id    uuid        REFERENCES capsules (id) ON DELETE SET NULL,
    host_id       uuid        REFERENCES hosts (id) ON DELETE SET NULL,
    template_id   uuid        REFERENCES templates (id) ON DELETE SET NULL,
    default_user  text        CHECK (default_user <> ''),
    default_env   jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(default_env) = 'object'),
    created_by    uuid        REFERENCES users (id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    completed_at  timestamptz,
    CHECK (current_step BETWEEN 0 AND total_steps),
    CHECK ((status IN ('success', 'failed', 'cancelled')) = (completed_at IS NOT NULL))
);
-- A name may have only one build in flight.
CREATE UNIQUE INDEX builds_active_name_key ON builds (name) WHERE status IN ('pending', 'running');
CREATE INDEX builds_created_idx ON builds (created_at DESC);
CREATE INDEX builds_pending_idx ON builds (created_at) WHERE status = 'pending';

CREATE TABLE build_archives (
    build_id uuid  PRIMARY KEY REFERENCES builds (id) ON DELETE CASCADE,
    data     bytea NOT NULL CHECK (length(data) <= 104857600)
);

-- Notification channels (ch-). config is the sealed (AES-256-GCM) provider configuration.
CREATE TABLE channels (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id    uuid        NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    provider   text        NOT NULL CHECK (provider IN ('discord', 'slack', 'teams', 'googlechat', 'telegram', 'matrix', 'webhook')),
    config     bytea       NOT NULL CHECK (length(config) > 0),
    events     text[]      NOT NULL DEFAULT '{}' CHECK (events <@ ARRAY[
                               'capsule.created', 'capsule.running', 'capsule.paused', 'capsule.destroyed',
                               'template.snapshot.created', 'template.snapshot.deleted', 'host.up', 'host.down']),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX channels_team_idx ON channels (team_id, created_at);
CREATE TRIGGER channels_updated_at BEFORE UPDATE ON channels FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Audit log (log-). actor_id is a user or API key id; system entries have none.
CREATE TABLE audit_logs (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id       uuid        NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    actor_type    text        NOT NULL CHECK (actor_type IN ('user', 'api_key', 'system')),
    actor_id      uuid,
    actor_name    text,
    resource_type text        NOT NULL CHECK (resource_type ~ '^[a-z][a-z_]*$'),
    resource_id   text,
    action        text        NOT NULL CHECK (action ~ '^[a-z][a-z_]*(\.[a-z][a-z_]*)+$'),
    scope         text        NOT NULL CHECK (scope IN ('team', 'admin')),
    status        text        NOT NULL CHECK (status IN ('success', 'failure')),
    metadata      jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((actor_type = 'system') = (actor_id IS NULL))
);
CREATE INDEX audit_logs_team_page_idx ON audit_logs (team_id, created_at DESC, id DESC);
CREATE INDEX audit_logs_page_idx ON audit_logs (created_at DESC, id DESC);

-- Single-use account tokens (activation, password reset), stored hashed.
CREATE TABLE one_time_tokens (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    kind       text        NOT NULL CHECK (kind IN ('activation', 'password_reset')),
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash text        NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX one_time_tokens_user_idx ON one_time_tokens (user_id, kind);
CREATE INDEX one_time_tokens_expires_idx ON one_time_tokens (expires_at);

-- Work queue (notification deliveries and other background work): claimed
-- with FOR UPDATE SKIP LOCKED under a lease; an expired lease is reaped.
CREATE TABLE jobs (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue        text        NOT NULL CHECK (queue ~ '^[a-z][a-z0-9_.-]{0,63}$'),
    payload      jsonb       NOT NULL DEFAULT '{}',
    status       text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts     integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts integer     NOT NULL DEFAULT 10 CHECK (max_attempts >= 1),
    run_at       timestamptz NOT NULL DEFAULT now(),
    locked_by    text,
    locked_until timestamptz,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    CHECK ((status = 'running') = (locked_until IS NOT NULL AND locked_by IS NOT NULL)),
    CHECK ((status IN ('done', 'failed')) = (finished_at IS NOT NULL))
);
CREATE INDEX jobs_pending_idx ON jobs (queue, run_at, id) WHERE status = 'pending';
CREATE INDEX jobs_running_idx ON jobs (locked_until) WHERE status = 'running';
CREATE INDEX jobs_finished_idx ON jobs (finished_at) WHERE status IN ('done', 'failed');
CREATE TRIGGER jobs_updated_at BEFORE UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- +goose Down
DROP TABLE jobs;
DROP TABLE one_time_tokens;
DROP TABLE audit_logs;
DROP TABLE channels;
DROP TABLE build_archives;
DROP TABLE builds;
DROP TABLE team_stats_samples;
DROP TABLE capsule_metrics;
DROP TABLE capsules;
DROP TABLE templates;
DROP TABLE internal_ca;
DROP TABLE host_refresh_tokens;
DROP TABLE host_registration_tokens;
DROP TABLE hosts;
DROP TABLE api_keys;
DROP TABLE team_members;
DROP TABLE teams;
DROP TABLE user_identities;
DROP TABLE users;
DROP FUNCTION set_updated_at();
