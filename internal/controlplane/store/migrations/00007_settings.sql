-- Control-plane settings shared by every control plane of one database:
-- the generated JWT secret when none is configured.

-- +goose Up
CREATE TABLE settings (
    key        text        PRIMARY KEY CHECK (key ~ '^[a-z][a-z0-9_.]{0,63}$'),
    value      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE settings;
