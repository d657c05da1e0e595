import { describe, expect, it } from 'vitest';
import { applyBuildEvent, stepStates, type BuildEvent } from './builds';
import type { Build, LogEntry } from './types';

const build: Build = {
	id: 'bld-1', name: 't', base_template: 'base', recipe: ['RUN  echo   a'], vcpus: 1, memory_mb: 512,
	skip_pre_post: true, status: 'pending', current_step: 0, total_steps: 2, logs: null, default_user: '', default_env: {}, created_at: ''
};
const log = (step: number, ok = true): LogEntry => ({ step, phase: 'recipe', cmd: 'RUN  echo   a', stdout: '  a  \n', stderr: '', exit: ok ? 0 : 1, ok, elapsed_ms: 5 });

describe('build events', () => {
	it('folds build, step and status messages', () => {
		let b = applyBuildEvent(null, { type: 'build', build });
		expect(b!.logs).toEqual([]);
		b = applyBuildEvent(b, { type: 'status', status: 'running' });
		expect(stepStates(b!).map((s) => s.state)).toEqual(['running', 'waiting']);
		b = applyBuildEvent(b, { type: 'step', current_step: 1, total_steps: 2, log: log(1) });
		b = applyBuildEvent(b, { type: 'step', current_step: 1, total_steps: 2, log: log(1) }); // repeated: kept once
		expect(b!.logs).toHaveLength(1);
		expect(b!.logs![0].stdout).toBe('  a  \n'); // whitespace kept
		expect(stepStates(b!).map((s) => s.state)).toEqual(['ok', 'running']);
		b = applyBuildEvent(b, { type: 'step', current_step: 2, total_steps: 2, log: log(2, false) });
		b = applyBuildEvent(b, { type: 'status', status: 'failed', error: 'recipe step 2 failed: exit code 1' });
		expect(b!.error).toContain('exit code 1');
		expect(stepStates(b!).map((s) => s.state)).toEqual(['ok', 'failed']);
	});
	it('marks steps never run of a cancelled build as skipped', () => {
		const b = applyBuildEvent({ ...build, status: 'running', logs: [] }, { type: 'status', status: 'cancelled' });
		expect(stepStates(b!).map((s) => s.state)).toEqual(['skipped', 'skipped']);
	});
	it('follows the frames the control plane sends, as JSON text', () => {
		// GET /v1/admin/builds/{id}/events: the build (logs [] before any step), each finished step, the final status.
		const frames = [
			`{"type":"build","build":${JSON.stringify({ ...build, status: 'running', logs: [] })}}`,
			`{"type":"step","current_step":1,"total_steps":2,"log":${JSON.stringify(log(1))}}`,
			`{"type":"step","current_step":2,"total_steps":2,"log":${JSON.stringify({ ...log(2), cmd: 'COPY a .', stdout: '' })}}`,
			'{"type":"status","status":"success"}'
		];
		let b: Build | null = null;
		for (const f of frames) b = applyBuildEvent(b, JSON.parse(f) as BuildEvent);
		expect(b!.status).toBe('success');
		expect(b!.current_step).toBe(2);
		expect(stepStates(b!).map((s) => [s.state, s.log?.cmd])).toEqual([['ok', 'RUN  echo   a'], ['ok', 'COPY a .']]);
	});
	it('ignores an error frame and steps before the build', () => {
		expect(applyBuildEvent(null, { type: 'step', current_step: 1, total_steps: 2, log: log(1) })).toBeNull();
		const b = applyBuildEvent(build, { type: 'error', data: 'build not found', code: 'not_found', fatal: true });
		expect(b).toBe(build);
	});
});
