import { describe, expect, it } from 'vitest';
import { listeningPorts, proxyURL } from './ports';
import { crumbs, parentOf } from './format';

describe('ports', () => {
	it('finds listening sockets in /proc/net/tcp', () => {
		const tcp = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:C35F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0100007F:1F40 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 3 1
   3: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 0A 0 0 0 0 0 4 1`;
		expect(listeningPorts(tcp)).toEqual([8000, 50015]);
		expect(listeningPorts('')).toEqual([]);
	});
	it('builds proxy links', () => {
		expect(proxyURL(8000, 'cl-abc', 'localhost', { protocol: 'http:', port: '8080' })).toBe('http://8000-cl-abc.localhost:8080/');
		expect(proxyURL(3000, 'cl-abc', 'wrenn.example', { protocol: 'https:', port: '' })).toBe('https://3000-cl-abc.wrenn.example/');
	});
	it('splits paths into breadcrumbs', () => {
		expect(crumbs('/home/user')).toEqual([
			{ name: '/', path: '/' },
			{ name: 'home', path: '/home' },
			{ name: 'user', path: '/home/user' }
		]);
		expect(parentOf('/home/user')).toBe('/home');
		expect(parentOf('/home')).toBe('/');
	});
});
