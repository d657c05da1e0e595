import adapter from '@sveltejs/adapter-static';
import { vitePreprocess } from '@sveltejs/vite-plugin-svelte';

// The dashboard is a single-page app: every route renders in the browser, and the control plane
// answers unknown dashboard paths with index.html (web/web.go). The output goes to build/app, which
// the Go package web embeds; build/.gitkeep stays so that a plain `go build` compiles without it.
export default {
	preprocess: vitePreprocess(),
	kit: {
		adapter: adapter({ pages: 'build/app', assets: 'build/app', fallback: 'index.html', strict: false }),
		alias: { $lib: 'src/lib' }
	}
};
