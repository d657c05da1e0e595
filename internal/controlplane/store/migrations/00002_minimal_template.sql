-- The "minimal" platform template: a busybox root filesystem every agent
-- builds without a network (fast to start; "base" is the Debian one).

-- +goose Up
INSERT INTO templates (id, team_id, name, type) VALUES
    ('00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000000', 'minimal', 'base');

-- +goose Down
DELETE FROM templates WHERE id = '00000000-0000-0000-0000-000000000002';
