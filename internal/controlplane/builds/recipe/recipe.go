// Package recipe is the template builder's recipe language: parsing, ENV expansion, healthchecks, the
// build phases and the shell line each step runs as (docs/api.md, "Template builds").
package recipe

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"
	"unicode"
)

// Kind is an instruction keyword, always upper case.
type Kind string

// The instructions of the recipe language.
const (
	Run     Kind = "RUN"
	Start   Kind = "START"
	Env     Kind = "ENV"
	Workdir Kind = "WORKDIR"
	User    Kind = "USER"
	Copy    Kind = "COPY"
)

// Default RUN timeouts and the fixed limits of the other steps.
const (
	RecipeTimeout  = 30 * time.Second // RUN in the recipe phase
	PhaseTimeout   = 10 * time.Minute // RUN in the pre-build and post-build phases
	StartTimeout   = 10 * time.Second // START: time to launch
	WorkdirTimeout = 10 * time.Second
	UserTimeout    = 30 * time.Second
	CopyTimeout    = 60 * time.Second
)

// maxUserName is the longest name useradd accepts.
const maxUserName = 32

// Instruction is one parsed recipe step.
type Instruction struct {
	Line    int           // 1-based position in the recipe (blank and comment lines count)
	Kind    Kind          // the keyword, upper case
	Text    string        // the instruction as written, trimmed
	Command string        // RUN, START: the command
	Timeout time.Duration // RUN --timeout (0 = the phase's default)
	Key     string        // ENV key
	Value   string        // ENV value, not yet expanded
	Path    string        // WORKDIR path, USER name
	Sources []string      // COPY sources, cleaned relative paths inside the archive
	Dest    string        // COPY destination as written
}

// Limit is how long the step may take, given the phase's default RUN timeout.
func (in Instruction) Limit(phaseDefault time.Duration) time.Duration {
	switch in.Kind {
	case Run:
		if in.Timeout > 0 {
			return in.Timeout
		}
		return phaseDefault
	case Start:
		return StartTimeout
	case Workdir:
		return WorkdirTimeout
	case User:
		return UserTimeout
	case Copy:
		return CopyTimeout
	}
	return 0
}

var (
	userName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)
	envName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// ErrEmpty is returned by Parse for a recipe without a single instruction.
var ErrEmpty = errors.New("recipe must contain at least one command")

// Parse parses a recipe, one instruction per element. Blank elements and comments (first non-blank
// character '#') are skipped but still count for line numbers. Every error but ErrEmpty reads
// "recipe line N: …".
func Parse(lines []string) ([]Instruction, error) {
	var out []Instruction
	for i, raw := range lines {
		text := strings.TrimSpace(raw)
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		in, err := parseLine(text)
		if err != nil {
			return nil, fmt.Errorf("recipe line %d: %w", i+1, err)
		}
		in.Line = i + 1
		out = append(out, in)
	}
	if len(out) == 0 {
		return nil, ErrEmpty
	}
	return out, nil
}

// cutSpace splits s at its first run of white space.
func cutSpace(s string) (head, rest string) {
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

func parseLine(text string) (Instruction, error) {
	// A NUL byte cannot be passed to a process as part of an argument.
	if strings.IndexByte(text, 0) >= 0 {
		return Instruction{}, errors.New("instruction contains a NUL byte")
	}
	word, rest := cutSpace(text)
	in := Instruction{Kind: Kind(strings.ToUpper(word)), Text: text}
	switch in.Kind {
	case Run:
		if flag, after := cutSpace(rest); strings.HasPrefix(flag, "--timeout") {
			value, ok := strings.CutPrefix(flag, "--timeout=")
			if !ok {
				return in, errors.New("RUN --timeout must be written --timeout=<duration>")
			}
			d, err := time.ParseDuration(value)
			if err != nil || d <= 0 {
				return in, fmt.Errorf("RUN --timeout %q is not a positive duration (such as 90s, 5m, 1h30m)", value)
			}
			in.Timeout, rest = d, after
		}
		if rest == "" {
			return in, errors.New("RUN requires a command")
		}
		in.Command = rest
	case Start:
		if rest == "" {
			return in, errors.New("START requires a command")
		}
		in.Command = rest
	case Env:
		key, value, ok := strings.Cut(rest, "=")
		if !ok {
			return in, errors.New("ENV requires KEY=VALUE")
		}
		if !envName.MatchString(key) {
			return in, fmt.Errorf("ENV key %q is not a valid variable name (letters, digits and _, not starting with a digit)", key)
		}
		in.Key, in.Value = key, value
	case Workdir:
		if rest == "" {
			return in, errors.New("WORKDIR requires a path")
		}
		in.Path = rest
	case User:
		switch {
		case rest == "":
			return in, errors.New("USER requires a name")
		case !userName.MatchString(rest):
			return in, fmt.Errorf("USER name %q is invalid (must match [A-Za-z_][A-Za-z0-9_-]*)", rest)
		case len(rest) > maxUserName:
			return in, fmt.Errorf("USER name %q is longer than %d characters", rest, maxUserName)
		}
		in.Path = rest
	case Copy:
		tokens := strings.Fields(rest)
		if len(tokens) < 2 {
			return in, errors.New("COPY requires at least one source and a destination")
		}
		for _, src := range tokens[:len(tokens)-1] {
			clean, err := cleanSource(src)
			if err != nil {
				return in, err
			}
			in.Sources = append(in.Sources, clean)
		}
		in.Dest = tokens[len(tokens)-1]
	default:
		return in, fmt.Errorf("unknown instruction %q (expected RUN, START, ENV, WORKDIR, USER, or COPY)", word)
	}
	return in, nil
}

// cleanSource normalises a COPY source; it must stay inside the archive root.
func cleanSource(src string) (string, error) {
	bad := fmt.Errorf("COPY source must be a relative path within the archive: %s", src)
	if strings.HasPrefix(src, "/") {
		return "", bad
	}
	for _, part := range strings.Split(src, "/") {
		if part == ".." {
			return "", bad
		}
	}
	return path.Clean(src), nil
}
