// Listening TCP ports of a capsule from the text of /proc/net/tcp and /proc/net/tcp6 (there is no ports
// endpoint): state 0A is LISTEN; the local port is the hex after the colon. Header lines (also in the
// middle, when both tables are concatenated) are skipped.
export function listeningPorts(procNetTcp: string): number[] {
	const ports = new Set<number>();
	for (const line of procNetTcp.split('\n')) {
		const f = line.trim().split(/\s+/);
		if (f.length < 4 || f[3] !== '0A') continue;
		const port = parseInt(f[1].split(':').pop() ?? '', 16);
		if (port > 0) ports.add(port);
	}
	return [...ports].sort((a, b) => a - b);
}

// proxyURL is the port proxy's address of a capsule port: {port}-{id}.{domain} (docs/api.md, "Port
// proxy"), on the scheme and port the dashboard is served from.
export function proxyURL(port: number, capsuleId: string, domain: string, loc: { protocol: string; port: string }): string {
	return `${loc.protocol}//${port}-${capsuleId}.${domain}${loc.port ? ':' + loc.port : ''}/`;
}
