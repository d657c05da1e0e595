-- name: InitSetting :exec
-- Stores value under key unless the key has a value already (first control plane wins).
INSERT INTO settings (key, value) VALUES (@key, @value) ON CONFLICT (key) DO NOTHING;

-- name: GetSetting :one
SELECT value FROM settings WHERE key = @key;
