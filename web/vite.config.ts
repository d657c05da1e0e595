import { sveltekit } from '@sveltejs/kit/vite';
import { defineConfig } from 'vite';

// `npm run dev` proxies the API to a control plane on WRENN_CP (default http://127.0.0.1:8080).
const cp = process.env.WRENN_CP ?? 'http://127.0.0.1:8080';

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
