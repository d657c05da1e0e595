-- name: CreateChannel :one
INSERT INTO channels (team_id, name, provider, config, events)
VALUES (@team_id, @name, @provider, @config, coalesce(@events::text[], '{}'))
RETURNING *;

-- name: GetChannel :one
SELECT * FROM channels WHERE team_id = @team_id AND id = @id;

-- name: ListChannels :many
SELECT * FROM channels WHERE team_id = @team_id ORDER BY created_at, id;

-- name: ListChannelsForEvent :many
SELECT * FROM channels WHERE team_id = @team_id AND @event::text = ANY (events) ORDER BY created_at, id;

-- name: DeleteChannel :execrows
DELETE FROM channels WHERE team_id = @team_id AND id = @id;
