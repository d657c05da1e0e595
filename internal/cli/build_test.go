package cli

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/wrenn/wrenn/internal/cli/profile"
)

// `template build` packs the directory into a tar.gz, uploads it with the recipe, follows the events
// and, for a failed build, prints the failed step's output and exits 1.
func TestTemplateBuild(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "ctx", "site"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ctx", "site", "index.html"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	recipeFile := filepath.Join(dir, "Recipe")
	if err := os.WriteFile(recipeFile, []byte("USER app\n# comment\nCOPY site /srv\nRUN make\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var (
		gotConfig map[string]any
		gotFiles  = map[string]string{}
	)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/admin/builds", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer jwt-good" {
			w.WriteHeader(401)
			return
		}
		mr, err := r.MultipartReader()
		if err != nil {
			t.Errorf("not multipart: %v", err)
			return
		}
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			switch p.FormName() {
			case "config":
				_ = json.NewDecoder(p).Decode(&gotConfig)
			case "archive":
				gz, err := gzip.NewReader(p)
				if err != nil {
					t.Errorf("archive is not gzip: %v", err)
					continue
				}
				tr := tar.NewReader(gz)
				for {
					h, err := tr.Next()
					if err != nil {
						break
					}
					b, _ := io.ReadAll(tr)
					gotFiles[h.Name] = string(b)
				}
			}
		}
		w.WriteHeader(201)
		_, _ = w.Write([]byte(`{"id":"bld-1","name":"web","status":"pending","total_steps":3}`))
	})
	mux.HandleFunc("GET /v1/admin/builds/{id}/events", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for _, m := range []string{
			`{"type":"build","build":{"id":"bld-1","name":"web","status":"running","total_steps":3,"logs":[]}}`,
			`{"type":"step","current_step":1,"total_steps":3,"log":{"step":1,"phase":"recipe","cmd":"USER app","ok":true}}`,
			`{"type":"step","current_step":2,"total_steps":3,"log":{"step":2,"phase":"recipe","cmd":"COPY site /srv","ok":true}}`,
			`{"type":"step","current_step":3,"total_steps":3,"log":{"step":3,"phase":"recipe","cmd":"RUN make","stdout":"building\n","stderr":"make: no rule","exit":2,"ok":false}}`,
			`{"type":"status","status":"failed","error":"recipe step 3 failed: make: no rule"}`,
		} {
			if err := c.Write(r.Context(), websocket.MessageText, []byte(m)); err != nil {
				return
			}
		}
		_ = c.Close(websocket.StatusNormalClosure, "")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	cfg := filepath.Join(dir, "config.json")
	c := &profile.Config{Profiles: map[string]profile.Profile{}}
	c.Set("test", profile.Profile{URL: srv.URL, Token: "jwt-good"})
	if err := c.Save(cfg); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := run(t, cfg, "template", "build", "web", "-f", recipeFile, "--archive", filepath.Join(dir, "ctx"),
		"--healthcheck", "curl -sf localhost")
	if code != 1 || !strings.Contains(errOut, "build failed: recipe step 3 failed: make: no rule") ||
		!strings.Contains(errOut, "--- stderr of step 3\nmake: no rule") || !strings.Contains(errOut, "building") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	if !strings.Contains(out, "3/3 recipe: RUN make  FAILED (exit 2)") || !strings.Contains(out, "1/3 recipe: USER app  ok") {
		t.Fatalf("progress: %s", out)
	}
	recipe, _ := gotConfig["recipe"].([]any)
	if gotConfig["name"] != "web" || len(recipe) != 4 || recipe[1] != "# comment" || gotConfig["healthcheck"] != "curl -sf localhost" || gotConfig["base_template"] != "base" {
		t.Fatalf("config %v", gotConfig)
	}
	if gotFiles["site/index.html"] != "hi" {
		t.Fatalf("archive files %v", gotFiles)
	}
}
