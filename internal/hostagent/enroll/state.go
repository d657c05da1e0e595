package enroll

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/internal/hostagent/statefile"
)

// stateFile is the on-disk form of Credentials (PEM kept readable).
type stateFile struct {
	HostID       string `json:"host_id"`
	Token        string `json:"token"`
	RefreshToken string `json:"refresh_token"`
	CertPEM      string `json:"cert_pem"`
	KeyPEM       string `json:"key_pem"`
	CACertPEM    string `json:"ca_cert_pem"`
	// Address is the advertised address the credentials were issued for.
	Address string `json:"address"`
}

// load reads the state file; a missing file is os.ErrNotExist.
func (c *Client) load() (Credentials, error) {
	b, err := os.ReadFile(c.cfg.StateFile)
	if err != nil {
		return Credentials{}, err
	}
	var s stateFile
	if err := json.Unmarshal(b, &s); err != nil {
		return Credentials{}, fmt.Errorf("credentials file %s: %w", c.cfg.StateFile, err)
	}
	c.storedAddr = s.Address
	return Credentials{
		HostID: s.HostID, Token: s.Token, RefreshToken: s.RefreshToken,
		CertPEM: []byte(s.CertPEM), KeyPEM: []byte(s.KeyPEM), CACertPEM: []byte(s.CACertPEM),
	}, nil
}

// save writes the state file atomically and durably, mode 0600.
func (c *Client) save(creds Credentials) error {
	b, err := json.MarshalIndent(stateFile{
		HostID: creds.HostID, Token: creds.Token, RefreshToken: creds.RefreshToken,
		CertPEM: string(creds.CertPEM), KeyPEM: string(creds.KeyPEM), CACertPEM: string(creds.CACertPEM),
		Address: c.cfg.Address,
	}, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(c.cfg.StateFile)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return statefile.Write(c.cfg.StateFile, append(b, '\n'), true)
}

// DetectSpecs reports this machine: architecture, CPUs, memory, and the size
// of the file system holding dir (where capsules live).
func DetectSpecs(dir string) (Specs, error) {
	s := Specs{Arch: runtime.GOARCH, CPUCores: runtime.NumCPU()}
	mem, err := memTotalKB()
	if err != nil {
		return s, err
	}
	s.MemoryMB = int(mem / 1024)
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return s, fmt.Errorf("size of %s: %w", dir, err)
	}
	s.DiskGB = int(st.Blocks * uint64(st.Bsize) >> 30)
	return s, nil
}

func memTotalKB() (uint64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			return strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no MemTotal in /proc/meminfo")
}
