import { describe, expect, it } from 'vitest';
import { PtyClient, decodeBase64, encodeBase64, type SocketLike } from './pty';

class FakeSocket implements SocketLike {
	readyState = 0;
	sent: Record<string, unknown>[] = [];
	onopen: ((ev: unknown) => void) | null = null;
	onmessage: ((ev: { data: unknown }) => void) | null = null;
	onclose: ((ev: { code: number; reason: string }) => void) | null = null;
	onerror: ((ev: unknown) => void) | null = null;
	constructor(readonly url: string) {}
	send(data: string) {
		this.sent.push(JSON.parse(data));
	}
	close(code = 1000, reason = '') {
		this.readyState = 3;
		this.onclose?.({ code, reason });
	}
	open() {
		this.readyState = 1;
		this.onopen?.({});
	}
	recv(m: object) {
		this.onmessage?.({ data: JSON.stringify(m) });
	}
}

function setup(extra: Partial<ConstructorParameters<typeof PtyClient>[0]> = {}) {
	const sockets: FakeSocket[] = [];
	const timers: (() => void)[] = [];
	const log: string[] = [];
	const out: string[] = [];
	const c = new PtyClient(
		{
			url: 'ws://x/v1/capsules/cl-1/pty',
			token: 'jwt',
			cols: 100,
			rows: 30,
			socket: (u) => {
				const s = new FakeSocket(u);
				sockets.push(s);
				return s;
			},
			schedule: (fn) => timers.push(fn),
			...extra
		},
		{
			output: (b) => out.push(new TextDecoder().decode(b)),
			started: (i) => log.push(`started ${i.tag} ${i.pid} ${i.reconnected}`),
			exit: (code) => log.push(`exit ${code}`),
			error: (m, fatal, code) => log.push(`error ${m} ${fatal} ${code ?? ''}`),
			state: (s) => log.push(`state ${s}`)
		}
	);
	return { c, sockets, timers, log, out };
}

describe('PtyClient', () => {
	it('authenticates first, then starts a shell with the terminal size', () => {
		const { c, sockets } = setup();
		c.open();
		sockets[0].open();
		expect(sockets[0].sent).toEqual([
			{ type: 'auth', token: 'jwt' },
			{ type: 'start', cmd: '/bin/bash', cols: 100, rows: 30 }
		]);
	});

	it('decodes output, encodes input as base64 and answers ping with pong', () => {
		const { c, sockets, out, log } = setup();
		c.open();
		const s = sockets[0];
		s.open();
		expect(c.input('early')).toBe(false); // nothing is sent before `started`
		s.recv({ type: 'started', tag: 'pty-0000abcd', pid: 42 });
		expect(log).toContain('started pty-0000abcd 42 false');
		s.recv({ type: 'output', data: encodeBase64(new TextEncoder().encode('héllo\r\n')) });
		expect(out).toEqual(['héllo\r\n']);
		expect(c.input('echo ü\r')).toBe(true);
		const input = s.sent.at(-1) as { type: string; data: string };
		expect(input.type).toBe('input');
		expect(new TextDecoder().decode(decodeBase64(input.data))).toBe('echo ü\r');
		s.recv({ type: 'ping' });
		expect(s.sent.at(-1)).toEqual({ type: 'pong' });
		c.resize(120, 40);
		expect(s.sent.at(-1)).toEqual({ type: 'resize', cols: 120, rows: 40 });
		c.resize(0, 40);
		expect(s.sent.at(-1)).toEqual({ type: 'resize', cols: 120, rows: 40 });
	});

	it('reconnects by tag after a drop, with the current size, and reports the replay', () => {
		const { c, sockets, timers, log, out } = setup();
		c.open();
		sockets[0].open();
		sockets[0].recv({ type: 'started', tag: 'pty-00000001', pid: 7 });
		c.resize(90, 20);
		c.drop();
		expect(c.state).toBe('reconnecting');
		expect(timers).toHaveLength(1);
		timers[0]();
		expect(sockets).toHaveLength(2);
		sockets[1].open();
		expect(sockets[1].sent).toEqual([
			{ type: 'auth', token: 'jwt' },
			{ type: 'connect', tag: 'pty-00000001', cols: 90, rows: 20 }
		]);
		sockets[1].recv({ type: 'started', tag: 'pty-00000001', pid: 7, reconnected: true });
		sockets[1].recv({ type: 'output', data: btoa('scrollback') });
		expect(log).toContain('started pty-00000001 7 true');
		expect(out).toEqual(['scrollback']);
		expect(c.state).toBe('open');
	});

	it('attaches to an existing tag when given one', () => {
		const { c, sockets } = setup({ tag: 'build-shell' });
		c.open();
		sockets[0].open();
		expect(sockets[0].sent[1]).toEqual({ type: 'connect', tag: 'build-shell', cols: 100, rows: 30 });
	});

	it('does not reconnect after exit, a fatal start error or close', () => {
		const a = setup();
		a.c.open();
		a.sockets[0].open();
		a.sockets[0].recv({ type: 'started', tag: 'pty-1', pid: 1 });
		a.sockets[0].recv({ type: 'exit', exit_code: 3 });
		a.sockets[0].close(1000);
		expect(a.log).toContain('exit 3');
		expect(a.c.state).toBe('exited');
		expect(a.timers).toHaveLength(0);

		const b = setup({ tag: 'gone' });
		b.c.open();
		b.sockets[0].open();
		b.sockets[0].recv({ type: 'error', data: 'pty with tag gone not found', code: 'not_found', fatal: true });
		b.sockets[0].close(1000);
		expect(b.c.state).toBe('failed');
		expect(b.timers).toHaveLength(0);
		expect(b.log).toContain('error pty with tag gone not found true not_found');

		const d = setup();
		d.c.open();
		d.sockets[0].open();
		d.sockets[0].recv({ type: 'started', tag: 'pty-2', pid: 2 });
		d.c.close();
		expect(d.c.state).toBe('closed');
		expect(d.timers).toHaveLength(0);
	});

	it('redials after the inactivity timeout closes an established session', () => {
		const { c, sockets, timers } = setup();
		c.open();
		sockets[0].open();
		sockets[0].recv({ type: 'started', tag: 'pty-3', pid: 3 });
		sockets[0].recv({ type: 'error', code: 'inactivity_timeout', data: 'no client message for 120s', fatal: true });
		sockets[0].close(4000, 'inactivity timeout');
		expect(c.state).toBe('reconnecting');
		expect(timers).toHaveLength(1);
	});

	it('ignores frames that are not JSON text', () => {
		const { c, sockets, log } = setup();
		c.open();
		sockets[0].open();
		c.handle(sockets[0], 'not json');
		c.handle(sockets[0], new Uint8Array([1]));
		expect(log).toEqual([]);
	});

	it('gives up when the socket closes before any session and no tag is known', () => {
		const { c, sockets, timers } = setup();
		c.open();
		sockets[0].close(1006);
		expect(c.state).toBe('failed');
		expect(timers).toHaveLength(0);
	});
});
