// The signed-in session: the user JWT and what the dashboard shows about the user, kept in
// localStorage so that a reload stays signed in. The JWT's claims are read for display only; the
// control plane checks every request (docs/security.md).
import type { AuthResponse } from './types';

const KEY = 'wrenn.session';

interface Claims {
	role?: string;
	is_admin?: boolean;
	exp?: number;
}

export function decodeClaims(token: string): Claims {
	try {
		const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
		return JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
	} catch {
		return {};
	}
}

class Session {
	token = $state('');
	userId = $state('');
	teamId = $state('');
	email = $state('');
	name = $state('');
	expired = $state(false);
	role = $derived(decodeClaims(this.token).role ?? '');
	isAdmin = $derived(!!decodeClaims(this.token).is_admin);

	constructor() {
		if (typeof localStorage === 'undefined') return;
		try {
			const s = JSON.parse(localStorage.getItem(KEY) ?? 'null') as AuthResponse | null;
			if (s?.token) {
				const exp = decodeClaims(s.token).exp ?? 0;
				if (exp * 1000 > Date.now()) this.set(s);
				else localStorage.removeItem(KEY);
			}
		} catch {
			localStorage.removeItem(KEY);
		}
	}

	set(a: AuthResponse) {
		this.token = a.token;
		this.userId = a.user_id;
		this.teamId = a.team_id;
		this.email = a.email;
		this.name = a.name;
		this.expired = false;
		localStorage.setItem(KEY, JSON.stringify(a));
	}

	clear() {
		this.token = '';
		this.userId = this.teamId = this.email = this.name = '';
		localStorage.removeItem(KEY);
	}

	// expire is called when the API answers 401 to a signed-in request.
	expire() {
		this.clear();
		this.expired = true;
	}
}

export const session = new Session();
