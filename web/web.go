// Package web serves the dashboard: the SvelteKit single-page app built by `make web` into
// web/build/app and embedded here (docs/dashboard.md). Without that build (a plain `go build`), it
// serves one page that says how to build the dashboard.
package web

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed all:build
var build embed.FS

// spaPrefixes are the dashboard's client-side routes: unknown paths under them get index.html, and
// any other unknown path stays the API's JSON 404 (so E2B and future API routes are never shadowed).
var spaPrefixes = []string{
	"/dashboard", "/admin", "/login", "/logout", "/signup", "/activate", "/reset-password", "/docs",
}

// Built reports whether the embedded files are a dashboard build (false: the placeholder page).
func Built() bool {
	_, err := fs.Stat(build, "build/app/index.html")
	return err == nil
}

// Dashboard serves the embedded dashboard.
type Dashboard struct {
	files fs.FS
	index []byte
	built bool
}

// New returns the dashboard of this binary.
func New() *Dashboard {
	d := &Dashboard{built: Built()}
	if !d.built {
		d.index = []byte(placeholder)
		return d
	}
	sub, err := fs.Sub(build, "build/app")
	if err != nil {
		panic(err) // build/app exists: Built checked it
	}
	d.files = sub
	d.index, _ = fs.ReadFile(sub, "index.html")
	return d
}

// Claims reports whether the dashboard answers a GET for p that no API route matched: the root, a
// built file, or a path under one of its client-side routes.
func (d *Dashboard) Claims(p string) bool {
	if p == "/" || p == "/index.html" {
		return true
	}
	// {dashboard}/auth/{provider}/callback receives the OAuth result (docs/api.md); /auth/oauth/... is
	// the API's.
	if rest, ok := strings.CutPrefix(p, "/auth/"); ok && !strings.HasPrefix(rest, "oauth/") {
		return strings.Count(rest, "/") == 1 && strings.HasSuffix(rest, "/callback")
	}
	for _, pre := range spaPrefixes {
		if p == pre || strings.HasPrefix(p, strings.TrimSuffix(pre, "/")+"/") {
			return true
		}
	}
	if d.files == nil {
		return false
	}
	name := strings.TrimPrefix(path.Clean(p), "/")
	st, err := fs.Stat(d.files, name)
	return err == nil && !st.IsDir()
}

// ServeHTTP answers a path Claims accepted: the file itself, else index.html (the app routes in the
// browser).
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	if d.files != nil {
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		if name != "" && name != "index.html" {
			if data, err := fs.ReadFile(d.files, name); err == nil {
				if strings.HasPrefix(name, "_app/immutable/") {
					h.Set("Cache-Control", "public, max-age=31536000, immutable")
				} else {
					h.Set("Cache-Control", "no-cache")
				}
				http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
				return
			}
		}
	}
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Frame-Options", "DENY")
	http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(d.index))
}

const placeholder = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Wrenn — dashboard not built</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1d2b27}
code,pre{background:#eef3f1;border-radius:4px;padding:.1rem .3rem}pre{padding:.8rem}</style></head>
<body><h1>Wrenn</h1>
<p>The control plane is running, but this binary was built without the web dashboard.</p>
<p>Build the dashboard (Node.js 20 and npm), then rebuild the control plane:</p>
<pre>make deps   # once: installs web/node_modules (npm ci)
make build  # runs make web, then embeds web/build/app in bin/wrenn-cp</pre>
<p>The API is unaffected: see <a href="/openapi.yaml">/openapi.yaml</a> and <code>/v1</code>.</p>
</body></html>
`
