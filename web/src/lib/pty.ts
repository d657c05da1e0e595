// PtyClient speaks the capsule PTY WebSocket protocol (docs/api.md, "PTY"): first-message auth, `start`
// for a new session or `connect` by tag to reattach, base64 `input`/`output`, `resize`, `kill`, and
// `pong` answers to the server's `ping`. When the socket drops before the PTY exited, it reconnects by
// tag; the server then replays the retained scrollback, announced by `started` with `reconnected:true`
// (the terminal clears itself on that event so the replay is not shown twice).
//
// It has no DOM dependency: the socket comes from a factory, so tests drive it with a fake.

export interface SocketLike {
	readonly readyState: number;
	onopen: ((ev: unknown) => void) | null;
	onmessage: ((ev: { data: unknown }) => void) | null;
	onclose: ((ev: { code: number; reason: string }) => void) | null;
	onerror: ((ev: unknown) => void) | null;
	send(data: string): void;
	close(code?: number, reason?: string): void;
}

export type PtyState = 'connecting' | 'open' | 'reconnecting' | 'exited' | 'closed' | 'failed';

export interface PtyEvents {
	output?: (bytes: Uint8Array) => void;
	started?: (info: { tag: string; pid: number; reconnected: boolean }) => void;
	exit?: (code: number) => void;
	error?: (message: string, fatal: boolean, code?: string) => void;
	state?: (s: PtyState) => void;
}

export interface PtyOptions {
	url: string;
	token: string;
	socket: (url: string) => SocketLike;
	cols?: number;
	rows?: number;
	cmd?: string;
	args?: string[];
	tag?: string; // reattach to this tag instead of starting a new PTY
	// retry delays in ms; the last one repeats. Reconnecting stops after maxRetries attempts in a row.
	retryDelays?: number[];
	maxRetries?: number;
	schedule?: (fn: () => void, ms: number) => unknown;
}

const OPEN = 1;

export function encodeBase64(bytes: Uint8Array): string {
	let s = '';
	for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
	return btoa(s);
}

export function decodeBase64(data: string): Uint8Array {
	const s = atob(data);
	const out = new Uint8Array(s.length);
	for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
	return out;
}

export class PtyClient {
	tag = '';
	pid = 0;
	state: PtyState = 'connecting';
	private ws: SocketLike | null = null;
	private cols: number;
	private rows: number;
	private retries = 0;
	private stopped = false;
	private readonly enc = new TextEncoder();

	constructor(
		private readonly opts: PtyOptions,
		private readonly on: PtyEvents = {}
	) {
		this.cols = opts.cols ?? 80;
		this.rows = opts.rows ?? 24;
		this.tag = opts.tag ?? '';
	}

	open() {
		this.stopped = false;
		this.dial();
	}

	private setState(s: PtyState) {
		this.state = s;
		this.on.state?.(s);
	}

	private dial() {
		const ws = this.opts.socket(this.opts.url);
		this.ws = ws;
		ws.onopen = () => {
			ws.send(JSON.stringify({ type: 'auth', token: this.opts.token }));
			if (this.tag) ws.send(JSON.stringify({ type: 'connect', tag: this.tag, cols: this.cols, rows: this.rows }));
			else
				ws.send(
					JSON.stringify({
						type: 'start',
						cmd: this.opts.cmd ?? '/bin/bash',
						...(this.opts.args ? { args: this.opts.args } : {}),
						cols: this.cols,
						rows: this.rows
					})
				);
		};
		ws.onmessage = (ev) => this.handle(ws, ev.data);
		ws.onclose = () => this.closed(ws);
		ws.onerror = () => {};
	}

	// handle processes one server frame; exported behaviour is observable through the events.
	handle(ws: SocketLike, data: unknown) {
		if (typeof data !== 'string') return;
		let m: { type?: string; [k: string]: unknown };
		try {
			m = JSON.parse(data);
		} catch {
			return;
		}
		switch (m.type) {
			case 'started':
				this.tag = String(m.tag ?? this.tag);
				this.pid = Number(m.pid ?? 0);
				this.retries = 0;
				this.setState('open');
				this.on.started?.({ tag: this.tag, pid: this.pid, reconnected: m.reconnected === true });
				break;
			case 'output':
				if (typeof m.data === 'string') this.on.output?.(decodeBase64(m.data));
				break;
			case 'exit':
				this.stopped = true;
				this.setState('exited');
				this.on.exit?.(Number(m.exit_code ?? -1));
				break;
			case 'ping':
				if (ws.readyState === OPEN) ws.send(JSON.stringify({ type: 'pong' }));
				break;
			case 'error': {
				const fatal = m.fatal === true;
				const code = typeof m.code === 'string' ? m.code : undefined;
				// An unknown tag or a refused start cannot be fixed by redialling.
				if (fatal && code !== 'inactivity_timeout' && this.state !== 'open') this.stopped = true;
				this.on.error?.(String(m.data ?? 'error'), fatal, code);
				break;
			}
		}
	}

	private closed(ws: SocketLike) {
		if (ws !== this.ws) return;
		this.ws = null;
		if (this.stopped) {
			if (this.state !== 'exited') this.setState(this.state === 'connecting' ? 'failed' : 'closed');
			return;
		}
		const delays = this.opts.retryDelays ?? [250, 1000, 2000, 5000];
		if (!this.tag || this.retries >= (this.opts.maxRetries ?? 20)) {
			this.setState('failed');
			return;
		}
		const delay = delays[Math.min(this.retries, delays.length - 1)];
		this.retries++;
		this.setState('reconnecting');
		(this.opts.schedule ?? setTimeout)(() => {
			if (!this.stopped) this.dial();
		}, delay);
	}

	private send(m: object): boolean {
		if (!this.ws || this.ws.readyState !== OPEN || this.state !== 'open') return false;
		this.ws.send(JSON.stringify(m));
		return true;
	}

	input(text: string | Uint8Array) {
		const bytes = typeof text === 'string' ? this.enc.encode(text) : text;
		return this.send({ type: 'input', data: encodeBase64(bytes) });
	}

	resize(cols: number, rows: number) {
		if (cols <= 0 || rows <= 0) return;
		this.cols = cols;
		this.rows = rows;
		this.send({ type: 'resize', cols, rows });
	}

	kill() {
		this.send({ type: 'kill' });
	}

	// drop closes the socket as a network failure would: the client reconnects by tag.
	drop() {
		this.ws?.close(4001, 'dropped');
	}

	// close ends the client; the PTY process keeps running on the capsule and can be reattached.
	close() {
		this.stopped = true;
		const ws = this.ws;
		this.ws = null;
		ws?.close(1000, 'closed');
		this.setState('closed');
	}
}
