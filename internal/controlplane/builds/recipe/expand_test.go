package recipe

import (
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	env := map[string]string{"HOME": "/home/u", "A": "x", "A_1": "y", "EMPTY": "", "D": "$A"}
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"$HOME/bin", "/home/u/bin"},
		{"${HOME}bin", "/home/ubin"},
		{"$A_1-$A", "y-x"},
		{"${A}_1", "x_1"},
		{"$UNSET:x", ":x"},
		{"${UNSET}", ""},
		{"$EMPTY.", "."},
		{"$$", "$"},
		{"$$A", "$A"},
		{"a$", "a$"},
		{"$1", "$1"},
		{"$-", "$-"},
		{"${}", "${}"},
		{"${A", "${A"},
		{"${A-B}", "${A-B}"},
		{"$D", "$A"}, // expanded once, not recursively
		{"${HOME}/${A}$A", "/home/u/xx"},
		{"é$A€", "éx€"},
	}
	for _, tt := range tests {
		if got := Expand(tt.in, env); got != tt.want {
			t.Errorf("Expand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := Expand("$A", nil); got != "" {
		t.Errorf("Expand with nil env = %q", got)
	}
}

func FuzzExpand(f *testing.F) {
	for _, s := range []string{"$A", "${A}", "$$", "a$", "${", "${A", "x$A_1y", "${}", "plain"} {
		f.Add(s, "v")
	}
	f.Fuzz(func(t *testing.T, s, v string) {
		env := map[string]string{"A": v, "A_1": v + v}
		got := Expand(s, env)
		if !strings.Contains(s, "$") && got != s {
			t.Fatalf("Expand(%q) without '$' = %q", s, got)
		}
		if !strings.Contains(v, "$") && strings.Count(got, "$") > strings.Count(s, "$") {
			t.Fatalf("Expand(%q) created '$': %q", s, got)
		}
		if empty := Expand(s, nil); len(empty) > len(s) {
			t.Fatalf("Expand(%q, nil) grew: %q", s, empty)
		}
	})
}
