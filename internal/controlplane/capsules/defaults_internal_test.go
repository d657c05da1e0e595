package capsules

import (
	"maps"
	"testing"
)

// defaults: the capsule's own env vars win key by key over the template's, and its fallback user
// replaces only a user no build chose (docs/e2b.md); the template's env is never modified.
func TestDefaultsMerge(t *testing.T) {
	tplEnv := map[string]string{"A": "tpl", "B": "tpl"}
	for _, tc := range []struct {
		name, tplUser, fallback string
		env                     map[string]string
		wantUser                string
		wantEnv                 map[string]string
	}{
		{"template only", "root", "", nil, "root", tplEnv},
		{"fallback replaces root", "root", "user", nil, "user", tplEnv},
		{"fallback keeps a built user", "builder", "user", nil, "builder", tplEnv},
		{"own env over the template's", "root", "", map[string]string{"B": "own", "C": "own"}, "root",
			map[string]string{"A": "tpl", "B": "own", "C": "own"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, env := defaults(tc.tplUser, tplEnv, tc.env, tc.fallback)
			if user != tc.wantUser || !maps.Equal(env, tc.wantEnv) {
				t.Fatalf("defaults = %q %v, want %q %v", user, env, tc.wantUser, tc.wantEnv)
			}
			if !maps.Equal(tplEnv, map[string]string{"A": "tpl", "B": "tpl"}) {
				t.Fatalf("template env modified: %v", tplEnv)
			}
		})
	}
}
