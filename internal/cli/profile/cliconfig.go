// Package profile is the wrenn CLI's configuration file: named profiles, each a control-plane URL with
// its credentials. `wrenn login` and `wrenn up` write it; every other command reads it.
package profile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// EnvPath names the variable that overrides the file's location.
const EnvPath = "WRENN_CONFIG"

// Profile is one control plane and the credentials used with it.
type Profile struct {
	URL    string `json:"url"`               // API base, e.g. http://127.0.0.1:8080
	APIKey string `json:"api_key,omitempty"` // wrn_… for capsule and snapshot routes
	Token  string `json:"token,omitempty"`   // user JWT for account, team and host routes
	Email  string `json:"email,omitempty"`
}

// Config is the whole file.
type Config struct {
	Current  string             `json:"current,omitempty"`
	Profiles map[string]Profile `json:"profiles"`
}

// Path returns the file's location: $WRENN_CONFIG, else $XDG_CONFIG_HOME/wrenn/config.json, else
// ~/.config/wrenn/config.json.
func Path() (string, error) {
	if p := os.Getenv(EnvPath); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("locate the config directory: %w", err)
	}
	return filepath.Join(dir, "wrenn", "config.json"), nil
}

// Load reads the file at path; a missing file is an empty configuration.
func Load(path string) (*Config, error) {
	c := &Config{Profiles: map[string]Profile{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if c.Profiles == nil {
		c.Profiles = map[string]Profile{}
	}
	return c, nil
}

// Save writes c to path atomically with mode 0600 (it holds credentials).
func (c *Config) Save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*.json")
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
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Profile returns the named profile, or the current one when name is "".
func (c *Config) Profile(name string) (Profile, string, error) {
	if name == "" {
		name = c.Current
	}
	if name == "" {
		return Profile{}, "", errors.New("no profile: run `wrenn login` (or `wrenn up`) first")
	}
	p, ok := c.Profiles[name]
	if !ok {
		return Profile{}, "", fmt.Errorf("no profile %q (have %v)", name, c.Names())
	}
	return p, name, nil
}

// Set stores p under name and makes it current.
func (c *Config) Set(name string, p Profile) {
	c.Profiles[name] = p
	c.Current = name
}

// Names lists the profiles, sorted.
func (c *Config) Names() []string {
	out := make([]string, 0, len(c.Profiles))
	for n := range c.Profiles {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
