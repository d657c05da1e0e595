package up

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stateFile is what `wrenn up` remembers between runs, in <data-dir>/up.json (mode 0600: it holds the
// admin password, the API key and the database password).
const stateFile = "up.json"

type state struct {
	// Database is the DSN given with --database-url/DATABASE_URL at the first run; empty = the private
	// cluster under <data-dir>/postgres.
	Database         string `json:"database,omitempty"`
	PostgresPort     int    `json:"postgres_port,omitempty"`
	PostgresPassword string `json:"postgres_password,omitempty"`

	AdminEmail    string `json:"admin_email"`
	AdminPassword string `json:"admin_password"`
	APIKey        string `json:"api_key,omitempty"`
	Bootstrapped  bool   `json:"bootstrapped"`
	// PoolsSet: --pool's warm pools were set in the control plane (the first run does it).
	PoolsSet bool `json:"pools_set,omitempty"`

	HostID       string `json:"host_id,omitempty"`
	AgentAddress string `json:"agent_address,omitempty"`
	NetPrefix    string `json:"net_prefix,omitempty"`
	Subnet       string `json:"subnet,omitempty"`
}

func loadState(dataDir string) (*state, bool, error) {
	var s state
	b, err := os.ReadFile(filepath.Join(dataDir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return &s, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, false, fmt.Errorf("%s: %w", filepath.Join(dataDir, stateFile), err)
	}
	return &s, true, nil
}

// save writes the state atomically with mode 0600.
func (s *state) save(dataDir string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dataDir, ".up-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dataDir, stateFile))
}

// randomHex returns n random bytes, hex encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on Linux
	return hex.EncodeToString(b)
}

// agentCredentials is the part of the agent's <data-dir>/credentials.json `wrenn up` reads: once the
// agent holds credentials it must keep advertising the address they were issued for.
type agentCredentials struct {
	HostID  string `json:"host_id"`
	Address string `json:"address"`
}

// loadAgentCredentials returns the agent's stored credentials, or ok=false when it has none.
func loadAgentCredentials(dataDir string) (agentCredentials, bool, error) {
	var c agentCredentials
	b, err := os.ReadFile(filepath.Join(dataDir, "credentials.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return c, false, nil
	}
	if err != nil {
		return c, false, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, false, fmt.Errorf("agent credentials: %w", err)
	}
	return c, c.HostID != "" && c.Address != "", nil
}
