package recipe

import (
	"os"
	"os/exec"
	"os/user"
	"reflect"
	"testing"
)

func TestScript(t *testing.T) {
	tests := []struct {
		name  string
		state State
		cmd   string
		want  string
	}{
		{"bare", State{}, "echo hi", `/bin/sh -c 'echo hi'`},
		{"root with workdir and env", State{User: "root", Workdir: "/srv/my app", Env: map[string]string{"B": "it's", "A": "1", "bad-key": "x"}},
			"echo $A",
			`cd '/srv/my app' && export A='1' B='it'\''s' && /bin/sh -c 'echo $A'`},
		{"user", State{User: "wrenn-user", Env: map[string]string{"HOME": "/home/wrenn-user"}}, "id -un",
			`su 'wrenn-user' -s /bin/sh -c 'export HOME='\''/home/wrenn-user'\'' && /bin/sh -c '\''id -un'\'''`},
	}
	for _, tt := range tests {
		if got := tt.state.Script(tt.cmd); got != tt.want {
			t.Errorf("%s: Script = %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

// TestScriptRuns runs the line Script builds for root (su needs root and a user) and checks cwd, env and
// the command's quoting survive the shell.
func TestScriptRuns(t *testing.T) {
	dir := t.TempDir()
	st := State{Workdir: dir, Env: map[string]string{"ODD": `a'b"c $X \n`, "X": "x"}}
	out, err := exec.Command("/bin/sh", "-c", st.Script(`printf '%s|%s|%s' "$(pwd)" "$ODD" "$X"`)).Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := dir + `|a'b"c $X \n|x`; string(out) != want {
		t.Fatalf("output %q, want %q", out, want)
	}
}

func TestQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", "it's", "'", "''", `\'`, "$HOME `id` $(id)", "a\nb", "!*?[]{}~#;&|<>", "é"} {
		out, err := exec.Command("/bin/sh", "-c", "printf %s "+Quote(s)).Output()
		if err != nil {
			t.Fatalf("sh for %q: %v", s, err)
		}
		if string(out) != s {
			t.Errorf("Quote(%q) through sh = %q", s, out)
		}
	}
}

func TestHomeAndUser(t *testing.T) {
	if Home("root") != "/root" || Home("") != "/root" || Home("wrenn-user") != "/home/wrenn-user" {
		t.Fatal("Home")
	}
	var st State
	st.SetUser("dev")
	if st.User != "dev" || st.Env["HOME"] != "/home/dev" {
		t.Fatalf("SetUser: %+v", st)
	}
	st.SetUser("root")
	if st.Env["HOME"] != "/root" {
		t.Fatalf("SetUser root: %+v", st)
	}
}

func TestResolve(t *testing.T) {
	if got := (State{}).Resolve("a/b"); got != "/a/b" {
		t.Errorf("no workdir: %q", got)
	}
	if got := (State{Workdir: "/srv"}).Resolve("../x/./y"); got != "/x/y" {
		t.Errorf("relative: %q", got)
	}
	if got := (State{Workdir: "/srv"}).Resolve("/opt//z/"); got != "/opt/z" {
		t.Errorf("absolute: %q", got)
	}
}

func TestDefaultEnv(t *testing.T) {
	env := map[string]string{"PATH": "/bin", "HOME": "/root", "USER": "root", "LOGNAME": "root", "SHELL": "/bin/sh",
		"PWD": "/", "OLDPWD": "/", "HOSTNAME": "h", "TERM": "xterm", "SHLVL": "1", "_": "/usr/bin/env",
		"WRENN_SANDBOX_ID": "x", "WRENN_TEMPLATE_ID": "y", "LANG": "C.UTF-8"}
	got := DefaultEnv(env)
	if want := map[string]string{"PATH": "/bin", "LANG": "C.UTF-8"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("DefaultEnv = %v, want %v", got, want)
	}
	if len(env) != 14 {
		t.Fatal("DefaultEnv changed its input")
	}
}

// TestScriptRunsAsUser checks the su wrapping with the unprivileged "nobody" account (root only).
func TestScriptRunsAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to su")
	}
	if _, err := user.Lookup("nobody"); err != nil {
		t.Skip("no nobody account")
	}
	st := State{User: "nobody", Workdir: "/", Env: map[string]string{"Q": "it's $fine"}}
	out, err := exec.Command("/bin/sh", "-c", st.Script(`printf '%s|%s' "$(id -un)" "$Q"`)).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if want := "nobody|it's $fine"; string(out) != want {
		t.Fatalf("output %q, want %q", out, want)
	}
}
