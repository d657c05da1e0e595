-- name: CreateTeam :one
INSERT INTO teams (name) VALUES (@name) RETURNING *;

-- name: GetTeam :one
-- A team that is not deleted.
SELECT * FROM teams WHERE id = @id AND deleted_at IS NULL;

-- name: GetTeamAnyState :one
SELECT * FROM teams WHERE id = @id;

-- name: RenameTeam :execrows
UPDATE teams SET name = @name WHERE id = @id AND deleted_at IS NULL;

-- name: SetTeamBYOC :execrows
UPDATE teams SET is_byoc = @is_byoc WHERE id = @id AND deleted_at IS NULL;

-- name: SoftDeleteTeam :execrows
-- The platform team cannot be deleted.
UPDATE teams SET deleted_at = now()
WHERE id = @id AND deleted_at IS NULL AND id <> '00000000-0000-0000-0000-000000000000';

-- name: ListTeamsForUser :many
SELECT sqlc.embed(teams), team_members.role
FROM teams JOIN team_members ON team_members.team_id = teams.id
WHERE team_members.user_id = @user_id AND teams.deleted_at IS NULL
ORDER BY team_members.joined_at, teams.id;

-- name: GetDefaultTeamForUser :one
-- The team a login lands in: the user's own team first, then the oldest membership.
SELECT sqlc.embed(teams), team_members.role
FROM teams JOIN team_members ON team_members.team_id = teams.id
WHERE team_members.user_id = @user_id AND teams.deleted_at IS NULL
ORDER BY (team_members.role = 'owner') DESC, team_members.joined_at, teams.id
LIMIT 1;

-- name: AddTeamMember :one
INSERT INTO team_members (team_id, user_id, role) VALUES (@team_id, @user_id, @role) RETURNING *;

-- name: GetTeamMember :one
SELECT team_members.* FROM team_members JOIN teams ON teams.id = team_members.team_id
WHERE team_members.team_id = @team_id AND team_members.user_id = @user_id AND teams.deleted_at IS NULL;

-- name: ListTeamMembers :many
SELECT u.id AS user_id, u.name, u.email, m.role, m.joined_at
FROM team_members m JOIN users u ON u.id = m.user_id
WHERE m.team_id = @team_id
ORDER BY m.joined_at, u.id;

-- name: SetTeamMemberRole :execrows
-- Changes an admin or member; the owner's role is never changed here.
UPDATE team_members SET role = @role
WHERE team_id = @team_id AND user_id = @user_id AND role <> 'owner';

-- name: RemoveTeamMember :execrows
-- Removes an admin or member; the owner cannot be removed.
DELETE FROM team_members WHERE team_id = @team_id AND user_id = @user_id AND role <> 'owner';

-- name: UserOwnsTeamWithMembers :one
SELECT EXISTS (
    SELECT 1 FROM team_members o JOIN teams t ON t.id = o.team_id
    WHERE o.user_id = @user_id AND o.role = 'owner' AND t.deleted_at IS NULL
      AND EXISTS (SELECT 1 FROM team_members x WHERE x.team_id = o.team_id AND x.user_id <> o.user_id)
)::bool;

-- name: ListTeams :many
-- Admin listing with counts, oldest first; deleted teams included.
SELECT sqlc.embed(teams),
       (SELECT count(*) FROM team_members m WHERE m.team_id = teams.id) AS member_count,
       o.name AS owner_name,
       o.email AS owner_email,
       (SELECT count(*) FROM capsules c WHERE c.team_id = teams.id AND c.status NOT IN ('stopped', 'error')) AS active_capsule_count,
       (SELECT count(*) FROM channels ch WHERE ch.team_id = teams.id) AS channel_count
FROM teams
LEFT JOIN team_members om ON om.team_id = teams.id AND om.role = 'owner'
LEFT JOIN users o ON o.id = om.user_id
ORDER BY teams.created_at, teams.id
LIMIT @max_results OFFSET @skip;

-- name: CountTeams :one
SELECT count(*) FROM teams;
