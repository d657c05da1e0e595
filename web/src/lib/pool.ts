// Warm pool display (docs/api.md, "Warm pools"): a template's pool is a size per host and, where the API
// reports it, the capsules ready now.
import type { Pool } from './types';

// poolSummary renders a pool for the templates table: "off", "2 per host", "2 per host · 1 ready".
export function poolSummary(p: Pool | undefined): string {
	const size = p?.size ?? 0;
	let s = size === 0 ? 'off' : `${size} per host`;
	if (p?.ready !== undefined && p.ready !== null) s += ` · ${p.ready} ready`;
	return s;
}

// wholeNumber reads a number input's value (null when empty, NaN or fractional): the API checks ranges and
// answers its own 400, so only what cannot be sent as an integer is refused here.
export function wholeNumber(v: unknown): number | null {
	if (v === null || v === undefined || v === '') return null;
	const n = typeof v === 'number' ? v : Number(v);
	return Number.isInteger(n) ? n : null;
}
