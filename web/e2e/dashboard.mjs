// Browser test of the dashboard against a real platform (run by tests/web): Debian's chromium, headless,
// driven by playwright-core. Environment: WRENN_URL, WRENN_EMAIL, WRENN_PASSWORD, WRENN_KEY (API key of
// the same team), WRENN_OUT (screenshot folder), CHROMIUM (browser binary). Prints each step; exits
// non-zero on the first failure (after a screenshot of it).
import { WAIT, client, env, launch, step } from './harness.mjs';

const base = env('WRENN_URL');
const api = client(base, { 'X-API-Key': env('WRENN_KEY') });
const { browser, context, page, shot } = await launch(env('WRENN_OUT'));

async function termText() {
	return page.locator('.session:not(.hidden) .xterm-rows').innerText();
}
async function waitTerm(re, what) {
	const deadline = Date.now() + WAIT;
	let last = '';
	while (Date.now() < deadline) {
		last = await termText();
		if (re.test(last)) return;
		await page.waitForTimeout(250);
	}
	throw new Error(`terminal never showed ${what}; it shows:\n${last}`);
}

let capsuleId = '';
try {
	step('sign in');
	await page.goto(base + '/login');
	await page.fill('input[name=email]', env('WRENN_EMAIL'));
	await page.fill('input[name=password]', env('WRENN_PASSWORD'));
	await page.click('button[type=submit]');
	await page.waitForURL('**/dashboard/capsules');
	await page.getByText('No capsules yet').waitFor();
	await shot('capsules-empty');

	step('create a capsule');
	await page.selectOption('select[name=template]', 'minimal');
	await page.fill('input[name=memory]', '256');
	await page.click('form button[type=submit]');
	const row = page.locator('tr[data-capsule]').first();
	await row.locator('[data-status]', { hasText: 'running' }).waitFor();
	capsuleId = await row.getAttribute('data-capsule');
	console.log('capsule', capsuleId);
	await shot('capsule-running');

	step('narrow window');
	const narrow = await context.newPage();
	await narrow.setViewportSize({ width: 390, height: 800 });
	await narrow.goto(base + '/dashboard/capsules');
	await narrow.locator(`tr[data-capsule="${capsuleId}"]`).waitFor();
	await shot('capsules-narrow', narrow);
	await narrow.close();

	step('terminal: echo hello');
	await page.click(`a[href="/dashboard/capsules/${capsuleId}"]`);
	await page.locator('[data-pty-state=open]').waitFor();
	await page.click('.session:not(.hidden) .xterm');
	await page.keyboard.type('echo hello\n');
	await waitTerm(/(^|\n)hello\s*(\n|$)/, 'a line "hello"');
	await page.keyboard.type('echo marker-$((6*7))\n');
	await waitTerm(/marker-42/, 'marker-42');
	await shot('terminal-hello');

	step('terminal: drop the socket, reconnect by tag with the scrollback');
	await page.evaluate(() => window.__wrennPty[0].drop());
	await page.locator('[data-reconnects="1"]').waitFor();
	await page.locator('[data-pty-state=open]').waitFor();
	await waitTerm(/marker-42/, 'the replayed scrollback (marker-42)');
	await page.click('.session:not(.hidden) .xterm');
	await page.keyboard.type('echo after-$((1+1))\n');
	await waitTerm(/after-2/, 'output after the reconnect');
	await shot('terminal-reconnected');

	step('files: upload and list');
	await page.click('a[data-tab=files]');
	await page.locator('table').first().waitFor();
	await page.setInputFiles('input[data-upload]', {
		name: 'uploaded-from-browser.txt',
		mimeType: 'text/plain',
		buffer: Buffer.from('# uploaded\necho "from the browser"\n')
	});
	await page.locator('tr[data-file="uploaded-from-browser.txt"]').waitFor();
	await page.locator('tr[data-file="uploaded-from-browser.txt"] button.link').click();
	await page.locator('pre.code', { hasText: 'from the browser' }).waitFor();
	await shot('files-uploaded');

	step('processes: kill a background process started through the API');
	const started = await api('POST', `/v1/capsules/${capsuleId}/exec`, {
		cmd: '/bin/sh',
		args: ['-c', 'while true; do echo tick; sleep 1; done'],
		background: true,
		tag: 'web-ticker'
	});
	if (started.status !== 202) throw new Error(`background exec: ${started.status} ${JSON.stringify(started.body)}`);
	await page.click('a[data-tab=processes]');
	const proc = page.locator('tr[data-process="web-ticker"]');
	await proc.waitFor();
	await proc.getByRole('button', { name: 'Output' }).click();
	await page.locator('[data-output]', { hasText: 'tick' }).waitFor();
	await shot('process-attached');
	await proc.getByRole('button', { name: 'Kill' }).click();
	await proc.waitFor({ state: 'detached' });
	const list = await api('GET', `/v1/capsules/${capsuleId}/processes`);
	if ((list.body?.processes ?? []).some((p) => p.tag === 'web-ticker' && p.status === 'running'))
		throw new Error('web-ticker still running after Kill: ' + JSON.stringify(list.body));
	await shot('process-killed');

	step('metrics');
	await page.click('a[data-tab=metrics]');
	await page.getByText('CPU', { exact: true }).waitFor();
	await shot('metrics');

	step('ports: a listening port links through the port proxy');
	const httpd = await api('POST', `/v1/capsules/${capsuleId}/exec`, {
		cmd: '/bin/sh',
		args: ['-c', 'mkdir -p /tmp/www && echo "served from port 8000" > /tmp/www/index.html && exec httpd -f -p 8000 -h /tmp/www'],
		background: true,
		tag: 'web-httpd'
	});
	if (httpd.status !== 202) throw new Error(`httpd: ${httpd.status} ${JSON.stringify(httpd.body)}`);
	await page.click('a[data-tab=ports]');
	const link = page.locator('tr[data-port="8000"] a');
	await link.waitFor();
	const href = await link.getAttribute('href');
	const want = `http://8000-${capsuleId}.localhost:${new URL(base).port}/`;
	if (href !== want) throw new Error(`port link ${href}, want ${want}`);
	await shot('ports');
	const proxied = await context.newPage();
	await proxied.goto(href);
	await proxied.getByText('served from port 8000').waitFor();
	await proxied.close();

	step('destroy the capsule');
	await page.goto(base + '/dashboard/capsules');
	const r = page.locator(`tr[data-capsule="${capsuleId}"]`);
	await r.getByRole('button', { name: 'Destroy' }).click();
	await r.waitFor({ state: 'detached' });
	await shot('capsule-destroyed');
	step('API keys: a new key is shown once');
	await page.goto(base + '/dashboard/keys');
	await page.fill('form input', 'browser key');
	await page.click('form button[type=submit]');
	const secret = (await page.locator('[data-secret]').innerText()).trim();
	if (!/^wrn_[0-9a-f]{32}$/.test(secret)) throw new Error('created key shown as ' + secret);
	await page.locator('td', { hasText: 'browser key' }).waitFor();
	await shot('api-key-created');

	step('hosts: a new host shows its registration token once, and is deleted after a preview');
	await page.goto(base + '/dashboard/hosts');
	await page.locator('tr td .badge.online').first().waitFor();
	await page.getByRole('button', { name: 'Add host' }).click();
	const token = (await page.locator('.notice .secret').innerText()).trim();
	if (!/^[0-9a-f]{64}$/.test(token)) throw new Error('registration token shown as ' + token);
	const pending = page.locator('tr', { has: page.locator('.badge.pending') });
	await pending.waitFor();
	await shot('host-created');
	await pending.getByRole('button', { name: 'Delete' }).click();
	await pending.getByText('No active capsules.').waitFor();
	await pending.getByRole('button', { name: 'Confirm delete' }).click();
	await pending.waitFor({ state: 'detached' });

	step('team: create a team and switch to it');
	await page.goto(base + '/dashboard/team');
	await page.locator('td', { hasText: 'admin@example.test' }).waitFor();
	await page.fill('input[pattern]', 'Browser Team');
	await page.getByRole('button', { name: 'Create and switch' }).click();
	await page.locator('h1', { hasText: 'Team: Browser Team' }).waitFor();
	await page.goto(base + '/dashboard/capsules');
	await page.getByText('No capsules yet').waitFor();
	const selected = await page.locator('select[aria-label=Team]').evaluate((s) => s.options[s.selectedIndex].text);
	if (selected !== 'Browser Team') throw new Error('team switcher shows ' + selected);
	await shot('team-switched');

	step('admin: recipe editor colours');
	await page.goto(base + '/admin/templates');
	for (const kw of ['run', 'env', 'workdir', 'copy', 'start']) await page.locator(`.recipe .kw-${kw}`).first().waitFor();
	await shot('admin-templates');

	step('admin: build a template from a recipe and an uploaded archive, every step turns green');
	const recipe = ['RUN echo hello', 'WORKDIR /opt/app', 'COPY hello.txt .', 'RUN cat hello.txt && pwd'];
	await page.fill('input[name=name]', 'web-hello');
	await page.selectOption('select[name=base_template]', 'minimal');
	await page.fill('input[name=memory_mb]', '256');
	await page.check('input[name=skip_pre_post]');
	await page.fill('textarea[name=recipe]', recipe.join('\n'));
	await page.setInputFiles('input[data-archive]', env('WRENN_BUILD_ARCHIVE'));
	await page.getByText('hello-site.tar.gz').waitFor();
	await page.getByRole('button', { name: 'Start build' }).click();
	await page.waitForURL('**/admin/builds/bld-*');
	await page.locator('[data-build-status]', { hasText: /^(success|failed|cancelled)$/ }).waitFor({ timeout: 600_000 });
	const status = (await page.locator('[data-build-status]').innerText()).trim();
	const steps = page.locator('li.step');
	const states = await steps.evaluateAll((ls) => ls.map((l) => l.dataset.state));
	if (status !== 'success' || states.length !== recipe.length || states.some((s) => s !== 'ok')) {
		await shot('build-failed');
		throw new Error(`build ${status}, steps ${JSON.stringify(states)}: ${await page.locator('main').innerText()}`);
	}
	const outputOf = (i) => steps.nth(i).locator('[data-output]').innerText();
	for (const [i, want] of [[0, /^hello\s*$/], [3, /^hello from the archive\n\/opt\/app\s*$/]]) {
		const text = await outputOf(i);
		if (!want.test(text)) throw new Error(`step ${i + 1} shows output ${JSON.stringify(text)}, want ${want}`);
	}
	for (let i = 0; i < recipe.length; i++) {
		const cmd = (await steps.nth(i).locator('.cmd').innerText()).trim();
		if (cmd !== recipe[i]) throw new Error(`step ${i + 1} shows ${JSON.stringify(cmd)}, want ${recipe[i]}`);
	}
	await shot('build-success');
	await page.goto(base + '/admin/templates');
	await page.locator('td.mono', { hasText: /^web-hello$/ }).waitFor();

	step('Sign in with GitHub (a local fake GitHub)');
	const oauthURL = env('WRENN_OAUTH_URL');
	const gh = await browser.newContext({ viewport: { width: 1280, height: 800 } });
	const ghPage = await gh.newPage();
	ghPage.setDefaultTimeout(WAIT);
	await ghPage.goto(oauthURL + '/login');
	await ghPage.getByRole('link', { name: 'Sign in with GitHub' }).click();
	await ghPage.waitForURL('**/dashboard/capsules');
	await ghPage.getByText('No capsules yet').waitFor();
	await ghPage.locator('.who', { hasText: 'Octo Cat' }).waitFor();
	await shot('github-signed-in', ghPage);
	await gh.close();
	step('API reference');
	await page.goto(base + '/docs');
	await page.locator('.swagger-ui .info .title').waitFor();
	// Swagger UI renders the operations further down as the page scrolls to them.
	const ptyOp = page.locator('.opblock-summary-path', { hasText: '/v1/capsules/{id}/pty' }).first();
	for (let deadline = Date.now() + WAIT; (await ptyOp.count()) === 0 && Date.now() < deadline; ) {
		await page.mouse.wheel(0, 1500);
		await page.waitForTimeout(100);
	}
	await ptyOp.waitFor();
	await shot('docs');

	console.log('all steps passed');
} catch (e) {
	console.error('FAILED:', e?.stack ?? e);
	await shot('failure').catch(() => {});
	process.exitCode = 1;
} finally {
	await browser.close();
}
