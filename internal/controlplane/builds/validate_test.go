package builds

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/wrenn/wrenn/internal/apierr"
)

func TestValidate(t *testing.T) {
	ok := createRequest{Name: "web", Recipe: []string{"# setup", "RUN true", "", "ENV A=1"}}.params()
	if ok.BaseTemplate != "base" || ok.VCPUs != 1 || ok.MemoryMB != 512 {
		t.Fatalf("defaults: %+v", ok)
	}
	if n, err := ok.validate(); err != nil || n != 2+prePostSteps {
		t.Fatalf("steps = %d, %v", n, err)
	}
	skip := ok
	skip.SkipPrePost = true
	if n, err := skip.validate(); err != nil || n != 2 {
		t.Fatalf("steps without pre/post = %d, %v", n, err)
	}
	for _, tc := range []struct {
		p   CreateParams
		msg string
	}{
		{CreateParams{Recipe: []string{"RUN true"}, VCPUs: 1, MemoryMB: 512}, "name is required"},
		{CreateParams{Name: "-x", Recipe: []string{"RUN true"}, VCPUs: 1, MemoryMB: 512}, "invalid template name"},
		{CreateParams{Name: "x", VCPUs: 1, MemoryMB: 512}, "recipe must contain at least one command"},
		{CreateParams{Name: "x", Recipe: []string{"RUN true", "FROM x"}, VCPUs: 1, MemoryMB: 512}, "recipe line 2: "},
		{CreateParams{Name: "x", Recipe: []string{"RUN true"}, Healthcheck: "--retries=x true", VCPUs: 1, MemoryMB: 512}, "healthcheck: "},
		{CreateParams{Name: "x", Recipe: []string{"RUN true"}, VCPUs: 0, MemoryMB: 512}, "vcpus must be at least 1"},
		{CreateParams{Name: "x", Recipe: []string{"RUN true"}, VCPUs: 1, MemoryMB: 64}, "memory_mb must be at least 128"},
	} {
		_, err := tc.p.validate()
		e := apierr.From(err)
		if err == nil || e.Code != apierr.CodeInvalidRequest || !strings.HasPrefix(e.Message, tc.msg) {
			t.Errorf("%+v: %v; want %q", tc.p, err, tc.msg)
		}
	}
}

func TestScripts(t *testing.T) {
	if got := userScript("root"); got != "true" {
		t.Errorf("USER root: %q", got)
	}
	if got := userScript("alice"); !strings.Contains(got, "useradd -m -s /bin/bash 'alice'") || !strings.Contains(got, "/etc/sudoers.d/wrenn-alice") {
		t.Errorf("USER alice: %q", got)
	}
	if got := workdirScript("/srv/app", "root"); strings.Contains(got, "chown") {
		t.Errorf("WORKDIR as root chowns: %q", got)
	}
	if got := workdirScript("/home/bob/x", "bob"); !strings.Contains(got, "chown -R 'bob': \"$first\"") {
		t.Errorf("WORKDIR as bob: %q", got)
	}
	got := copyScript([]string{"a b", "c"}, "/dst", true, "bob")
	if !strings.Contains(got, "s='/opt/wrenn-build/a b'") || !strings.HasSuffix(got, "chown -R 'bob': \"$dst\"") || !strings.Contains(got, "mkdir -p \"$dst\"; ") {
		t.Errorf("COPY: %q", got)
	}
	if r := (result{exit: 3, stderr: " oops \n"}); r.failure() != "oops" {
		t.Errorf("failure: %q", r.failure())
	}
	if r := (result{exit: 3}); r.failure() != "exit code 3" {
		t.Errorf("failure: %q", r.failure())
	}
}

// The generated shell lines parse (sh -n).
func TestScriptsParse(t *testing.T) {
	for _, s := range []string{userScript("alice"), workdirScript("/home/bob/x y", "bob"), workdirScript("/a", "root"),
		copyScript([]string{"a'b", "c"}, "/d st", true, "bob"), copyScript([]string{"f"}, "/d", false, "root")} {
		if out, err := exec.Command("/bin/sh", "-n", "-c", s).CombinedOutput(); err != nil {
			t.Errorf("%q: %v %s", s, err, out)
		}
	}
}
