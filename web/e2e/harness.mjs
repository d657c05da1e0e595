// Shared pieces of the browser tests (run by tests/web): environment, Debian's chromium through
// playwright-core, screenshots, the REST API beside the browser and polling.
import { chromium } from 'playwright-core';
import path from 'node:path';

export const WAIT = 90_000;

export function env(k) {
	const v = process.env[k];
	if (!v) throw new Error(`${k} is not set`);
	return v;
}

export const step = (s) => console.log('step:', s);

// launch starts headless chromium with one page. Dialogs are accepted; a prompt gets answers.prompt.
// shot(name) saves a numbered screenshot in out.
export async function launch(out) {
	const browser = await chromium.launch({ executablePath: env('CHROMIUM'), headless: true, args: ['--no-sandbox'] });
	const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
	const page = await context.newPage();
	page.setDefaultTimeout(WAIT);
	const answers = { prompt: '' };
	page.on('dialog', (d) => (d.type() === 'prompt' ? d.accept(answers.prompt) : d.accept()));
	page.on('pageerror', (e) => console.log('page error:', e.message));
	let n = 0;
	const shot = async (name, p = page) => {
		const file = path.join(out, `${String(++n).padStart(2, '0')}-${name}.png`);
		await p.screenshot({ path: file });
		console.log('screenshot', file);
	};
	return { browser, context, page, answers, shot };
}

// client calls the API at base with the given credential headers; it answers {status, body}.
export function client(base, headers) {
	return async (method, p, body) => {
		const res = await fetch(base + p, {
			method,
			headers: { ...headers, ...(body ? { 'Content-Type': 'application/json' } : {}) },
			body: body ? JSON.stringify(body) : undefined
		});
		const text = await res.text();
		let parsed = null;
		try {
			parsed = text ? JSON.parse(text) : null;
		} catch {
			parsed = text;
		}
		return { status: res.status, body: parsed };
	};
}

// until calls f every 250 ms until it answers true; anything else it answers (or throws) describes the
// state so far, and after timeout until throws with what and that description.
export async function until(what, f, timeout = WAIT) {
	const deadline = Date.now() + timeout;
	let last;
	for (;;) {
		try {
			last = await f();
			if (last === true) return;
		} catch (e) {
			last = e;
		}
		if (Date.now() > deadline) throw new Error(`${what}: still not so after ${timeout / 1000} s; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
		await new Promise((r) => setTimeout(r, 250));
	}
}
