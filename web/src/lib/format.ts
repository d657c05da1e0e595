// Display helpers shared by the pages.
export function bytes(n: number | undefined): string {
	if (n === undefined || n === null || isNaN(n)) return '—';
	const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
	let i = 0;
	while (n >= 1024 && i < units.length - 1) {
		n /= 1024;
		i++;
	}
	return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + ' ' + units[i];
}

export function ago(t: string | number | undefined): string {
	if (!t) return '—';
	const ms = typeof t === 'number' ? t * 1000 : Date.parse(t);
	const s = Math.round((Date.now() - ms) / 1000);
	if (s < 5) return 'just now';
	if (s < 60) return s + ' s ago';
	if (s < 3600) return Math.floor(s / 60) + ' min ago';
	if (s < 86400) return Math.floor(s / 3600) + ' h ago';
	return new Date(ms).toLocaleDateString();
}

export function when(t: string | number | undefined): string {
	if (!t) return '—';
	const d = typeof t === 'number' ? new Date(t * 1000) : new Date(t);
	return d.toLocaleString();
}

export function joinPath(dir: string, name: string): string {
	return (dir.endsWith('/') ? dir : dir + '/') + name;
}

// crumbs splits an absolute path into breadcrumb links: [{name:'/', path:'/'}, {name:'home', path:'/home'}, …].
export function crumbs(path: string): { name: string; path: string }[] {
	const out = [{ name: '/', path: '/' }];
	let cur = '';
	for (const part of path.split('/').filter(Boolean)) {
		cur += '/' + part;
		out.push({ name: part, path: cur });
	}
	return out;
}

export function parentOf(path: string): string {
	const i = path.replace(/\/+$/, '').lastIndexOf('/');
	return i <= 0 ? '/' : path.slice(0, i);
}
