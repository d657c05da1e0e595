// Package osuser looks up the capsule's OS users and resolves request paths
// against them (the rules of the envd protocol, docs/envd.md).
package osuser

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Files read for lookups; variables so tests can point them at fixtures.
var (
	PasswdFile = "/etc/passwd"
	GroupFile  = "/etc/group"
)

// ErrUnknownUser is returned when no user has the requested name.
var ErrUnknownUser = errors.New("invalid username")

// ErrInvalidPath is returned for paths that cannot be resolved, such as ~other.
var ErrInvalidPath = errors.New("invalid path")

// User is one entry of the user database with its group memberships.
type User struct {
	Name   string
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups, including GID
	Home   string
	Shell  string
}

// Lookup returns the user called name.
func Lookup(name string) (*User, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: empty", ErrUnknownUser)
	}
	var found *User
	err := scan(PasswdFile, func(f []string) bool {
		if len(f) < 7 || f[0] != name {
			return true
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			return true
		}
		found = &User{Name: f[0], UID: uint32(uid), GID: uint32(gid), Home: f[5], Shell: f[6]}
		return false
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", PasswdFile, err)
	}
	if found == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownUser, name)
	}
	if found.Home == "" {
		found.Home = "/"
	}
	if found.Shell == "" {
		found.Shell = "/bin/sh"
	}
	found.Groups = []uint32{found.GID}
	_ = scan(GroupFile, func(f []string) bool {
		if len(f) < 4 {
			return true
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil || uint32(gid) == found.GID {
			return true
		}
		for _, m := range strings.Split(f[3], ",") {
			if m == name {
				found.Groups = append(found.Groups, uint32(gid))
				break
			}
		}
		return true
	})
	return found, nil
}

// UserName returns the name of uid, or the number as a string when unknown.
func UserName(uid uint32) string { return nameOf(PasswdFile, uid) }

// GroupName returns the name of gid, or the number as a string when unknown.
func GroupName(gid uint32) string { return nameOf(GroupFile, gid) }

func nameOf(file string, id uint32) string {
	want := strconv.FormatUint(uint64(id), 10)
	name := want
	_ = scan(file, func(f []string) bool {
		if len(f) >= 3 && f[2] == want {
			name = f[0]
			return false
		}
		return true
	})
	return name
}

// scan calls fn with the colon-separated fields of each non-comment line
// until fn returns false.
func scan(file string, fn func([]string) bool) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if !fn(strings.Split(line, ":")) {
			return nil
		}
	}
	return sc.Err()
}

// ResolvePath turns a request path into an absolute, cleaned path for user u:
// an empty path becomes defaultWorkdir (if set, else the home), ~ and ~/x
// expand to the home, ~other is invalid, relative paths join the home.
func ResolvePath(u *User, path, defaultWorkdir string) (string, error) {
	if path == "" {
		if defaultWorkdir != "" {
			path = defaultWorkdir
		} else {
			return filepath.Clean(u.Home), nil
		}
	}
	if strings.HasPrefix(path, "~") {
		rest := path[1:]
		if rest != "" && rest[0] != '/' {
			return "", fmt.Errorf("%w: %q: only ~ and ~/ are supported", ErrInvalidPath, path)
		}
		return filepath.Join(u.Home, rest), nil
	}
	if filepath.IsAbs(path) {
		return filepath.Clean(path), nil
	}
	return filepath.Join(u.Home, path), nil
}

// Environ returns the identity variables of u for a new process.
func (u *User) Environ() map[string]string {
	return map[string]string{"HOME": u.Home, "USER": u.Name, "LOGNAME": u.Name, "SHELL": u.Shell}
}
