// The REST client of the dashboard: one fetch wrapper that adds the signed-in user's JWT and turns the
// API's error body ({"error":{"code","message"}}, docs/api.md) into an ApiError.
import { session } from './session.svelte';

export class ApiError extends Error {
	constructor(
		readonly status: number,
		readonly code: string,
		message: string
	) {
		super(message);
	}
}

type Body = unknown;

async function errorOf(res: Response): Promise<ApiError> {
	let code = 'http_' + res.status;
	let message = res.statusText || 'request failed';
	try {
		const j = await res.json();
		if (j?.error) {
			code = j.error.code ?? code;
			message = j.error.message ?? message;
		}
	} catch {
		/* not JSON */
	}
	return new ApiError(res.status, code, message);
}

export async function request(method: string, path: string, body?: Body, init: RequestInit = {}): Promise<Response> {
	const headers = new Headers(init.headers);
	if (session.token) headers.set('Authorization', 'Bearer ' + session.token);
	let payload: BodyInit | undefined;
	if (body instanceof FormData) payload = body;
	else if (body !== undefined) {
		headers.set('Content-Type', 'application/json');
		payload = JSON.stringify(body);
	}
	let res: Response;
	try {
		res = await fetch(path, { ...init, method, headers, body: payload });
	} catch (e) {
		throw new ApiError(0, 'network', 'cannot reach the control plane: ' + (e as Error).message);
	}
	if (!res.ok) {
		const err = await errorOf(res);
		if (res.status === 401 && session.token && !path.startsWith('/v1/auth/')) session.expire();
		throw err;
	}
	return res;
}

export async function api<T = unknown>(method: string, path: string, body?: Body): Promise<T> {
	const res = await request(method, path, body);
	if (res.status === 204 || res.headers.get('Content-Length') === '0') return undefined as T;
	const text = await res.text();
	return (text ? JSON.parse(text) : undefined) as T;
}

export const get = <T>(path: string) => api<T>('GET', path);
export const post = <T>(path: string, body?: Body) => api<T>('POST', path, body ?? {});
export const put = <T>(path: string, body: Body) => api<T>('PUT', path, body);
export const del = <T>(path: string) => api<T>('DELETE', path);

// wsURL turns an API path into a ws:// or wss:// URL on the page's origin.
export function wsURL(path: string, origin: string = location.origin): string {
	return origin.replace(/^http/, 'ws') + path;
}

export function message(e: unknown): string {
	if (e instanceof ApiError) return e.message;
	if (e instanceof Error) return e.message;
	return String(e);
}
