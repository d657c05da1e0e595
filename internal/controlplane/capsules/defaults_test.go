package capsules_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

// A capsule gets its template's default user and env at creation, and the template's current ones
// again at every resume (docs/api.md, "Template defaults").
func TestTemplateDefaultsOnCreateAndResume(t *testing.T) {
	f := newFixture(t, true)
	key := cptest.Key(f.alice.APIKey)
	setDefaults := func(user, env string) {
		t.Helper()
		_, err := f.env.Store.Pool().Exec(context.Background(),
			`UPDATE templates SET default_user = $1, default_env = $2::jsonb WHERE name = 'minimal'`, user, env)
		if err != nil {
			t.Fatal(err)
		}
	}
	setDefaults("user", `{"GREETING":"one","KEEP":"k"}`)
	c := f.create(t, key, map[string]any{"template": "minimal", "memory_mb": 256})
	if got := f.exec(t, c.ID, `echo "$(id -un) $GREETING $KEEP"`); got != "user one k" {
		t.Fatalf("after create: %q", got)
	}

	setDefaults("root", `{"GREETING":"two","KEEP":"k"}`)
	f.do(t, http.StatusOK, http.MethodPost, "/v1/capsules/"+c.ID+"/pause", key, nil)
	var resumed capsules.Capsule
	f.do(t, http.StatusOK, http.MethodPost, "/v1/capsules/"+c.ID+"/resume", key, nil).JSON(t, &resumed)
	if got := f.exec(t, c.ID, `echo "$(id -un) $GREETING $KEEP"`); got != "root two k" {
		t.Fatalf("after resume: %q (the template's current defaults were not sent)", got)
	}
}
