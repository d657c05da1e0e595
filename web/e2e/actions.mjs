// Browser test of the capsule and template actions (run by tests/web against a real platform): a warm
// pool set on the admin templates page, fork from the capsule page and from the capsule list, pause and
// resume, snapshot to a template and its deletion. Every UI action is checked through the API too.
// Environment: WRENN_URL, WRENN_EMAIL, WRENN_PASSWORD (the admin), WRENN_KEY (API key of the admin's
// team), WRENN_ADMIN_TOKEN (the admin's JWT, for /v1/admin), WRENN_OUT, CHROMIUM. Prints each step;
// exits non-zero on the first failure (after a screenshot of it). Every capsule it creates is destroyed
// before it exits.
import { client, env, launch, step, until } from './harness.mjs';

const base = env('WRENN_URL');
const api = client(base, { 'X-API-Key': env('WRENN_KEY') });
const admin = client(base, { Authorization: 'Bearer ' + env('WRENN_ADMIN_TOKEN') });
const SLOW = 300_000; // fork, pause and snapshot checkpoint a capsule under runsc

const { browser, page, answers, shot } = await launch(env('WRENN_OUT'));
const created = new Set();

// capsuleStatus is a capsule's status through the API: 'gone' once it is destroyed (stopped or 404).
async function capsuleStatus(id) {
	const r = await api('GET', `/v1/capsules/${id}`);
	if (r.status === 404 || r.body?.status === 'stopped') return 'gone';
	if (r.status !== 200) throw new Error(`GET capsule ${id}: ${r.status} ${JSON.stringify(r.body)}`);
	return r.body.status;
}
const statusIs = (id, want) =>
	until(`capsule ${id} ${want} (API)`, async () => {
		const s = await capsuleStatus(id);
		return s === want || `status ${s}`;
	}, SLOW);
async function listed() {
	const r = await api('GET', '/v1/capsules');
	if (r.status !== 200) throw new Error(`list capsules: ${r.status} ${JSON.stringify(r.body)}`);
	return r.body;
}
async function minimalPool() {
	const r = await admin('GET', '/v1/admin/templates');
	if (r.status !== 200) throw new Error(`admin templates: ${r.status} ${JSON.stringify(r.body)}`);
	const t = r.body.find((t) => t.name === 'minimal' && t.platform);
	if (!t) throw new Error('no platform template minimal');
	return t.pool;
}
const head = () => page.locator('.head');

try {
	step('sign in');
	await page.goto(base + '/login');
	await page.fill('input[name=email]', env('WRENN_EMAIL'));
	await page.fill('input[name=password]', env('WRENN_PASSWORD'));
	await page.click('button[type=submit]');
	await page.waitForURL('**/dashboard/capsules');

	step('admin templates: a pool size out of range shows the API message and changes nothing');
	const before = (await minimalPool()).size;
	await page.goto(base + '/admin/templates');
	const tpl = page.locator('tr[data-template="minimal"][data-platform="true"]');
	const summary = tpl.locator('[data-pool-summary]');
	const setBtn = tpl.getByRole('button', { name: 'Set' });
	await summary.waitFor();
	await tpl.locator('input[name=pool_size]').fill('65');
	await setBtn.click();
	await tpl.locator('[data-pool-error]', { hasText: 'size must be 0..64' }).waitFor();
	await shot('pool-bad-size');
	if ((await minimalPool()).size !== before) throw new Error(`a refused pool size changed the pool: ${JSON.stringify(await minimalPool())}`);

	step('admin templates: set the warm pool of minimal to 1; the API has it and the hosts fill it');
	await tpl.locator('input[name=pool_size]').fill('1');
	await setBtn.click();
	await tpl.locator('[data-pool-summary][data-pool-size="1"]').waitFor();
	if (await tpl.locator('[data-pool-error]').count()) throw new Error('pool error after a good size: ' + (await tpl.locator('[data-pool-error]').innerText()));
	await until('minimal pool size 1 (API)', async () => (await minimalPool()).size === 1 || JSON.stringify(await minimalPool()));
	// ready comes with the answer of a pool change (and with listings that report it): set again until a
	// warm capsule is ready on the host.
	await until(
		'the page shows a ready warm capsule',
		async () => {
			const text = await summary.innerText();
			if (/^1 per host · [1-9]\d* ready$/.test(text.trim())) return true;
			if (!(await setBtn.isDisabled())) await setBtn.click();
			return text;
		},
		120_000
	);
	await shot('pool-ready');

	step('admin templates: turn the pool off again');
	await tpl.locator('input[name=pool_size]').fill('0');
	await setBtn.click();
	await tpl.locator('[data-pool-summary][data-pool-size="0"]').waitFor();
	await until('minimal pool size 0 (API)', async () => (await minimalPool()).size === 0 || JSON.stringify(await minimalPool()));

	step('a running capsule to work on (created through the API)');
	const c = await api('POST', '/v1/capsules', { template: 'minimal', memory_mb: 256, timeout_sec: 0 });
	if (c.status !== 201) throw new Error(`create: ${c.status} ${JSON.stringify(c.body)}`);
	const src = c.body.id;
	created.add(src);
	await statusIs(src, 'running');

	step('capsule page: a fork count out of range shows the API message and makes nothing');
	await page.goto(`${base}/dashboard/capsules/${src}`);
	await page.locator('[data-capsule-status]', { hasText: 'running' }).waitFor();
	await head().getByRole('button', { name: 'Fork' }).click();
	const form = page.locator(`[data-fork-form="${src}"]`);
	await form.locator('input[name=fork_count]').fill('17');
	await form.getByRole('button', { name: 'Fork' }).click();
	await form.locator('[data-fork-error]', { hasText: 'count must be 1..16' }).waitFor();
	await shot('fork-bad-count');
	if ((await listed()).length !== 1) throw new Error('a refused fork changed the capsules: ' + JSON.stringify(await listed()));

	step('capsule page: fork into 2; the page links both, the API lists them running');
	await form.locator('input[name=fork_count]').fill('2');
	await form.getByRole('button', { name: 'Fork' }).click();
	const links = page.locator('[data-forked-notice] a[data-forked]');
	await page.locator('[data-forked-notice]').waitFor({ timeout: SLOW });
	const forks = await links.evaluateAll((as) => as.map((a) => a.dataset.forked));
	forks.forEach((id) => created.add(id));
	if (forks.length !== 2 || forks.includes(src) || forks[0] === forks[1]) throw new Error(`fork shows ${JSON.stringify(forks)}`);
	await shot('forked-two');
	if (await head().getByRole('button', { name: 'Pause' }).isDisabled()) throw new Error('the capsule page keeps its actions disabled after the fork');
	const ids = (await listed()).map((x) => x.id);
	for (const id of [src, ...forks]) if (!ids.includes(id)) throw new Error(`${id} not listed by the API: ${JSON.stringify(ids)}`);
	for (const id of forks) await statusIs(id, 'running');
	if (ids.length !== 3) throw new Error(`the API lists ${ids.length} capsules, want 3: ${JSON.stringify(ids)}`);

	step('capsule list: both forks are listed running');
	await links.first().click();
	await page.waitForURL(`**/dashboard/capsules/${forks[0]}`);
	await page.locator('[data-capsule-status]', { hasText: 'running' }).waitFor();
	await page.goto(base + '/dashboard/capsules');
	for (const id of forks) await page.locator(`tr[data-capsule="${id}"] [data-status]`, { hasText: 'running' }).waitFor();

	step('capsule list: fork a row into 1');
	const srcRow = page.locator(`tr[data-capsule="${src}"]`);
	await srcRow.getByRole('button', { name: 'Fork' }).click();
	const rowForm = page.locator(`[data-fork-form="${src}"]`);
	await rowForm.locator('input[name=fork_count]').fill('1');
	await rowForm.getByRole('button', { name: 'Fork' }).click();
	const rowLink = page.locator('[data-forked-notice] a[data-forked]');
	await page.locator('[data-forked-notice]').waitFor({ timeout: SLOW });
	const third = await rowLink.evaluateAll((as) => as.map((a) => a.dataset.forked));
	third.forEach((id) => created.add(id));
	if (third.length !== 1 || [src, ...forks].includes(third[0])) throw new Error(`row fork shows ${JSON.stringify(third)}`);
	await page.locator(`tr[data-capsule="${third[0]}"] [data-status]`, { hasText: 'running' }).waitFor();
	await statusIs(third[0], 'running');
	await shot('forked-from-list');

	step('capsule list: destroy the forks');
	for (const id of [...forks, ...third]) {
		const r = page.locator(`tr[data-capsule="${id}"]`);
		await r.getByRole('button', { name: 'Destroy' }).click();
		await r.waitFor({ state: 'detached' });
		await statusIs(id, 'gone');
	}
	if ((await listed()).map((x) => x.id).join() !== src) throw new Error('after destroying the forks the API lists ' + JSON.stringify(await listed()));

	step('capsule page: pause and resume');
	await page.goto(`${base}/dashboard/capsules/${src}`);
	await page.locator('[data-capsule-status]', { hasText: 'running' }).waitFor();
	await head().getByRole('button', { name: 'Pause' }).click();
	await page.locator('[data-capsule-status]', { hasText: 'paused' }).waitFor({ timeout: SLOW });
	await statusIs(src, 'paused');
	await shot('paused');
	await head().getByRole('button', { name: 'Resume' }).click();
	await page.locator('[data-capsule-status]', { hasText: 'running' }).waitFor({ timeout: SLOW });
	await statusIs(src, 'running');
	await shot('resumed');

	step('capsule page: snapshot to a template (the capsule is left paused)');
	answers.prompt = 'web-snap';
	await head().getByRole('button', { name: 'Snapshot' }).click();
	await page.locator('[data-action-notice]', { hasText: 'Template web-snap created' }).waitFor({ timeout: SLOW });
	await page.locator('[data-capsule-status]', { hasText: 'paused' }).waitFor();
	await statusIs(src, 'paused');
	const snaps = await api('GET', '/v1/snapshots?type=snapshot');
	if (!snaps.body?.some?.((t) => t.name === 'web-snap' && t.type === 'snapshot' && !t.platform)) throw new Error('the API lacks template web-snap: ' + JSON.stringify(snaps.body));
	await shot('snapshotted');

	step('templates: delete the snapshot template');
	await page.goto(base + '/dashboard/templates');
	const snapRow = page.locator('tr[data-template="web-snap"]');
	await snapRow.getByRole('button', { name: 'Delete' }).click();
	await snapRow.waitFor({ state: 'detached' });
	await until('web-snap gone (API)', async () => {
		const r = await api('GET', '/v1/snapshots');
		return (r.status === 200 && !r.body.some((t) => t.name === 'web-snap')) || `${r.status} ${JSON.stringify(r.body)}`;
	});

	step('capsule page: destroy the capsule');
	await page.goto(`${base}/dashboard/capsules/${src}`);
	await page.locator('[data-capsule-status]', { hasText: 'paused' }).waitFor();
	await head().getByRole('button', { name: 'Destroy' }).click();
	await page.waitForURL(/\/dashboard\/capsules$/);
	await statusIs(src, 'gone');
	await until('no capsules listed (API)', async () => (await listed()).length === 0 || JSON.stringify(await listed()));
	await shot('all-destroyed');

	console.log('all steps passed');
} catch (e) {
	console.error('FAILED:', e?.stack ?? e);
	await shot('failure').catch(() => {});
	process.exitCode = 1;
} finally {
	for (const id of created) {
		const r = await api('DELETE', `/v1/capsules/${id}`).catch((e) => ({ status: 0, body: e.message }));
		if (r.status !== 204 && r.status !== 404 && r.status !== 409) console.log(`cleanup: destroy ${id}: ${r.status} ${JSON.stringify(r.body)}`);
	}
	await browser.close();
}
