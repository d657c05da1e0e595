import { sveltekit } from '@sveltejs/kit/vite';
import { defineConfig } from 'vitest/config';

// `npm run dev` proxies the API to a control plane on WRENN_CP (default http://127.0.0.1:8080).
const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {};
const cp = env.WRENN_CP ?? 'http://127.0.0.1:8080';

export default defineConfig({
	plugins: [sveltekit()],
	server: {
		proxy: {
			'/v1': { target: cp, ws: true, changeOrigin: true },
			'/openapi.yaml': cp,
			'/auth/oauth': cp
		}
	},
	test: {
		include: ['src/**/*.test.ts'],
		environment: 'node'
	}
});
