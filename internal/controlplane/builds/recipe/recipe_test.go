package recipe

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Instruction
	}{
		{"run", "RUN echo hi", Instruction{Kind: Run, Command: "echo hi"}},
		{"lower case keyword", "run   echo  hi ", Instruction{Kind: Run, Command: "echo  hi"}},
		{"mixed case keyword", "rUn ls", Instruction{Kind: Run, Command: "ls"}},
		{"run timeout", "RUN --timeout=1h30m make all", Instruction{Kind: Run, Command: "make all", Timeout: 90 * time.Minute}},
		{"run other flag is the command", "RUN --version", Instruction{Kind: Run, Command: "--version"}},
		{"tab after keyword", "RUN\techo", Instruction{Kind: Run, Command: "echo"}},
		{"start", "START python3 -m http.server 8000", Instruction{Kind: Start, Command: "python3 -m http.server 8000"}},
		{"env", "ENV GREETING=hello world=yes", Instruction{Kind: Env, Key: "GREETING", Value: "hello world=yes"}},
		{"env empty value", "ENV EMPTY=", Instruction{Kind: Env, Key: "EMPTY", Value: ""}},
		{"env reference", "ENV PATH=$HOME/bin:${PATH}", Instruction{Kind: Env, Key: "PATH", Value: "$HOME/bin:${PATH}"}},
		{"workdir with spaces", "WORKDIR /srv/my app", Instruction{Kind: Workdir, Path: "/srv/my app"}},
		{"workdir relative", "workdir sub", Instruction{Kind: Workdir, Path: "sub"}},
		{"user", "USER wrenn-user", Instruction{Kind: User, Path: "wrenn-user"}},
		{"user underscore", "USER _svc9", Instruction{Kind: User, Path: "_svc9"}},
		{"copy", "COPY app/ ./conf/x.yaml /srv/app", Instruction{Kind: Copy, Sources: []string{"app", "conf/x.yaml"}, Dest: "/srv/app"}},
		{"copy whole archive", "COPY . dest", Instruction{Kind: Copy, Sources: []string{"."}, Dest: "dest"}},
		{"copy inner dotdot-like name", "COPY a..b/c.. d", Instruction{Kind: Copy, Sources: []string{"a..b/c.."}, Dest: "d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]string{tt.line})
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.line, err)
			}
			tt.want.Line = 1
			tt.want.Text = strings.TrimSpace(tt.line)
			if len(got) != 1 || !reflect.DeepEqual(got[0], tt.want) {
				t.Fatalf("Parse(%q) = %#v, want %#v", tt.line, got, tt.want)
			}
		})
	}
}

func TestParseLineNumbers(t *testing.T) {
	got, err := Parse([]string{"", "# comment", "   ", "  # indented comment", "RUN a", "", "ENV A=1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Line != 5 || got[1].Line != 7 {
		t.Fatalf("lines = %+v", got)
	}
	_, err = Parse([]string{"# c", "", "FROM debian"})
	want := `recipe line 3: unknown instruction "FROM" (expected RUN, START, ENV, WORKDIR, USER, or COPY)`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		lines []string
		want  string
	}{
		{nil, "recipe must contain at least one command"},
		{[]string{"", "# only comments", "  "}, "recipe must contain at least one command"},
		{[]string{"bogus thing"}, `recipe line 1: unknown instruction "bogus" (expected RUN, START, ENV, WORKDIR, USER, or COPY)`},
		{[]string{"RUN"}, "recipe line 1: RUN requires a command"},
		{[]string{"RUN --timeout=5m"}, "recipe line 1: RUN requires a command"},
		{[]string{"RUN --timeout=5m   "}, "recipe line 1: RUN requires a command"},
		{[]string{"RUN --timeout=abc ls"}, `recipe line 1: RUN --timeout "abc" is not a positive duration`},
		{[]string{"RUN --timeout=0s ls"}, `recipe line 1: RUN --timeout "0s" is not a positive duration`},
		{[]string{"RUN --timeout=-5s ls"}, `recipe line 1: RUN --timeout "-5s" is not a positive duration`},
		{[]string{"RUN --timeout=5 ls"}, `recipe line 1: RUN --timeout "5" is not a positive duration`},
		{[]string{"RUN --timeout 5m ls"}, "recipe line 1: RUN --timeout must be written --timeout=<duration>"},
		{[]string{"START"}, "recipe line 1: START requires a command"},
		{[]string{"ENV"}, "recipe line 1: ENV requires KEY=VALUE"},
		{[]string{"ENV FOO bar"}, "recipe line 1: ENV requires KEY=VALUE"},
		{[]string{"ENV =x"}, `recipe line 1: ENV key "" is not a valid variable name`},
		{[]string{"ENV 1A=x"}, `recipe line 1: ENV key "1A" is not a valid variable name`},
		{[]string{"ENV A-B=x"}, `recipe line 1: ENV key "A-B" is not a valid variable name`},
		{[]string{"ENV A B=x"}, `recipe line 1: ENV key "A B" is not a valid variable name`},
		{[]string{"WORKDIR"}, "recipe line 1: WORKDIR requires a path"},
		{[]string{"USER"}, "recipe line 1: USER requires a name"},
		{[]string{"USER 9lives"}, `recipe line 1: USER name "9lives" is invalid (must match [A-Za-z_][A-Za-z0-9_-]*)`},
		{[]string{"USER a b"}, `recipe line 1: USER name "a b" is invalid`},
		{[]string{"USER -root"}, `recipe line 1: USER name "-root" is invalid`},
		{[]string{"USER a;rm"}, `recipe line 1: USER name "a;rm" is invalid`},
		{[]string{"USER " + strings.Repeat("a", 33)}, "is longer than 32 characters"},
		{[]string{"COPY"}, "recipe line 1: COPY requires at least one source and a destination"},
		{[]string{"COPY onlyone"}, "recipe line 1: COPY requires at least one source and a destination"},
		{[]string{"COPY /etc/passwd dst"}, "recipe line 1: COPY source must be a relative path within the archive: /etc/passwd"},
		{[]string{"COPY ../x dst"}, "recipe line 1: COPY source must be a relative path within the archive: ../x"},
		{[]string{"COPY a/../b dst"}, "recipe line 1: COPY source must be a relative path within the archive: a/../b"},
		{[]string{"COPY ok a/.. dst"}, "recipe line 1: COPY source must be a relative path within the archive: a/.."},
		{[]string{"RUN ok", "RUN echo \x00"}, "recipe line 2: instruction contains a NUL byte"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.lines)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) && !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) error = %v, want %q", tt.lines, err, tt.want)
		}
	}
	if _, err := Parse(nil); !errors.Is(err, ErrEmpty) {
		t.Errorf("Parse(nil) = %v, want ErrEmpty", err)
	}
}

func TestLimit(t *testing.T) {
	ins, err := Parse([]string{"RUN a", "RUN --timeout=2m a", "START a", "WORKDIR /a", "USER u", "COPY a b", "ENV A=b"})
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{RecipeTimeout, 2 * time.Minute, StartTimeout, WorkdirTimeout, UserTimeout, CopyTimeout, 0}
	for i, in := range ins {
		if got := in.Limit(RecipeTimeout); got != want[i] {
			t.Errorf("%s: Limit = %v, want %v", in.Text, got, want[i])
		}
	}
	if got := ins[0].Limit(PhaseTimeout); got != PhaseTimeout {
		t.Errorf("RUN in a phase: Limit = %v", got)
	}
}

func TestPhases(t *testing.T) {
	pre := PreBuild()
	if len(pre) != 3 || pre[0].Command != "apt update" || pre[1].Kind != User || pre[1].Path != "wrenn-user" ||
		pre[2].Kind != Workdir || pre[2].Path != "/home/wrenn-user" {
		t.Fatalf("PreBuild = %+v", pre)
	}
	post := PostBuild()
	var cmds []string
	for _, in := range post {
		if in.Kind != Run || in.Timeout != 0 {
			t.Fatalf("post-build step %+v", in)
		}
		cmds = append(cmds, in.Command)
	}
	want := []string{"apt clean", "apt autoremove -y", "rm -rf /var/lib/apt/lists/*", "rm -rf /opt/wrenn-build"}
	if !reflect.DeepEqual(cmds, want) {
		t.Fatalf("PostBuild commands = %q, want %q", cmds, want)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"RUN echo hi", "run --timeout=5s x", "ENV A=$B", "WORKDIR /a b", "USER u", "COPY a/ b c",
		"COPY ../a b", "# c", "", "START x", "FROM y", "RUN --timeout=", "ENV =", "USER é"} {
		f.Add(s, "RUN ok")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		lines := []string{a, b}
		ins, err := Parse(lines)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "recipe line ") && !errors.Is(err, ErrEmpty) {
				t.Fatalf("error %q does not name the line", err)
			}
			return
		}
		if len(ins) == 0 {
			t.Fatal("Parse succeeded with no instructions")
		}
		for _, in := range ins {
			if in.Line < 1 || in.Line > len(lines) {
				t.Fatalf("line %d out of range", in.Line)
			}
			if in.Kind == "" || in.Text == "" || in.Text != strings.TrimSpace(lines[in.Line-1]) {
				t.Fatalf("bad instruction %+v", in)
			}
			switch in.Kind {
			case Run, Start:
				if in.Command == "" || in.Timeout < 0 {
					t.Fatalf("bad %+v", in)
				}
			case Env:
				if !envName.MatchString(in.Key) {
					t.Fatalf("bad key %+v", in)
				}
			case Workdir, User:
				if in.Path == "" {
					t.Fatalf("empty path %+v", in)
				}
			case Copy:
				if len(in.Sources) == 0 || in.Dest == "" {
					t.Fatalf("bad COPY %+v", in)
				}
				for _, s := range in.Sources {
					if strings.HasPrefix(s, "/") || s == ".." || strings.HasPrefix(s, "../") {
						t.Fatalf("COPY source %q escapes", s)
					}
				}
			default:
				t.Fatalf("unknown kind %q", in.Kind)
			}
		}
	})
}
