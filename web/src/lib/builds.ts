// Live build progress: the events WebSocket (docs/api.md, "Template builds") sends the build once,
// then one `step` per finished step and `status` on every status change. applyBuildEvent folds one
// message into the build the page shows.
import type { Build, LogEntry } from './types';

export type BuildEvent =
	| { type: 'build'; build: Build }
	| { type: 'step'; current_step: number; total_steps: number; log: LogEntry }
	| { type: 'status'; status: string; error?: string }
	| { type: 'error'; data: string; code?: string; fatal?: boolean };

export function applyBuildEvent(b: Build | null, m: BuildEvent): Build | null {
	switch (m.type) {
		case 'build':
			return { ...m.build, logs: m.build.logs ?? [] };
		case 'step': {
			if (!b) return b;
			const logs = (b.logs ?? []).filter((l) => l.step !== m.log.step);
			logs.push(m.log);
			logs.sort((x, y) => x.step - y.step);
			return { ...b, current_step: m.current_step, total_steps: m.total_steps, logs };
		}
		case 'status':
			return b ? { ...b, status: m.status, ...(m.error ? { error: m.error } : {}) } : b;
		default:
			return b;
	}
}

export const terminal = (status: string) => status === 'success' || status === 'failed' || status === 'cancelled';

export type StepState = 'ok' | 'failed' | 'running' | 'waiting' | 'skipped';

// stepStates lists every step of a build 1…total_steps with its state.
export function stepStates(b: Build): { step: number; state: StepState; log?: LogEntry }[] {
	const byStep = new Map((b.logs ?? []).map((l) => [l.step, l]));
	const out: { step: number; state: StepState; log?: LogEntry }[] = [];
	for (let i = 1; i <= b.total_steps; i++) {
		const log = byStep.get(i);
		let state: StepState;
		if (log) state = log.ok ? 'ok' : 'failed';
		else if (b.status === 'running' && i === (b.logs?.length ?? 0) + 1) state = 'running';
		else if (terminal(b.status)) state = 'skipped';
		else state = 'waiting';
		out.push({ step: i, state, log });
	}
	return out;
}
