package recipe

import (
	"path"
	"slices"
	"strings"
)

// State is the execution context of a build: current user, workdir and build env.
type State struct {
	User    string            // "" or "root" run as root
	Workdir string            // "" = none set
	Env     map[string]string // the build env, exported explicitly into every step
}

// Script returns the single /bin/sh command line that runs cmd in this state: cd to Workdir when set,
// export every env var (sorted by key, single-quoted), then /bin/sh -c '<cmd>'; for a user other than root
// the whole line runs through su <user> -s /bin/sh -c '…'. Keys that are not valid shell names are not
// exported (export would fail on them).
func (s State) Script(cmd string) string {
	var b strings.Builder
	if s.Workdir != "" {
		b.WriteString("cd " + Quote(s.Workdir) + " && ")
	}
	keys := make([]string, 0, len(s.Env))
	for k := range s.Env {
		if envName.MatchString(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	if len(keys) > 0 {
		b.WriteString("export")
		for _, k := range keys {
			b.WriteString(" " + k + "=" + Quote(s.Env[k]))
		}
		b.WriteString(" && ")
	}
	b.WriteString("/bin/sh -c " + Quote(cmd))
	if s.User == "" || s.User == "root" {
		return b.String()
	}
	return "su " + Quote(s.User) + " -s /bin/sh -c " + Quote(b.String())
}

// SetUser switches the state to user, with HOME following it.
func (s *State) SetUser(user string) {
	s.User = user
	if s.Env == nil {
		s.Env = map[string]string{}
	}
	s.Env["HOME"] = Home(user)
}

// Resolve returns p as an absolute, cleaned path: relative paths resolve against Workdir, or against
// "/" when none is set.
func (s State) Resolve(p string) string {
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	base := s.Workdir
	if base == "" {
		base = "/"
	}
	return path.Join(base, p)
}

// Quote POSIX-single-quotes s: the result is one shell word whose value is s.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Home is the home directory of user: /root for root, /home/<name> otherwise.
func Home(user string) string {
	if user == "" || user == "root" {
		return "/root"
	}
	return "/home/" + user
}

// sessionKeys are the variables a capsule session sets for itself; they are not template defaults.
var sessionKeys = []string{
	"HOME", "USER", "LOGNAME", "SHELL", "PWD", "OLDPWD", "HOSTNAME", "TERM", "SHLVL", "_",
	"WRENN_SANDBOX_ID", "WRENN_TEMPLATE_ID",
}

// DefaultEnv returns a copy of env without the per-session keys, the template's default_env.
func DefaultEnv(env map[string]string) map[string]string {
	out := make(map[string]string, len(env))
	for k, v := range env {
		if !slices.Contains(sessionKeys, k) {
			out[k] = v
		}
	}
	return out
}
