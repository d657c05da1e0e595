// Recipe highlighting for the template-build editor (docs/api.md, "Template builds"): each line is split
// into tokens whose kind picks a colour. Whitespace is kept exactly, so joining the tokens' text gives
// the line back.

export const KEYWORDS = ['RUN', 'START', 'ENV', 'WORKDIR', 'USER', 'COPY'] as const;

export type TokenKind =
	| 'keyword' // RUN, START, ...: class kw-<lower keyword>
	| 'unknown' // a first word that is no instruction
	| 'flag' // --timeout=5m
	| 'env-key' // ENV KEY=
	| 'comment'
	| 'text'
	| 'space';

export interface Token {
	kind: TokenKind;
	text: string;
	keyword?: string;
}

export function tokenizeLine(line: string): Token[] {
	const out: Token[] = [];
	const lead = /^\s*/.exec(line)![0];
	if (lead) out.push({ kind: 'space', text: lead });
	let rest = line.slice(lead.length);
	if (!rest) return out;
	if (rest.startsWith('#')) {
		out.push({ kind: 'comment', text: rest });
		return out;
	}
	const word = /^\S+/.exec(rest)![0];
	const upper = word.toUpperCase();
	const kw = (KEYWORDS as readonly string[]).includes(upper) ? upper : undefined;
	out.push(kw ? { kind: 'keyword', text: word, keyword: kw } : { kind: 'unknown', text: word });
	rest = rest.slice(word.length);
	const gap = /^\s*/.exec(rest)![0];
	if (gap) out.push({ kind: 'space', text: gap });
	rest = rest.slice(gap.length);
	if (kw === 'RUN') {
		const flag = /^--\S*/.exec(rest);
		if (flag) {
			out.push({ kind: 'flag', text: flag[0] });
			rest = rest.slice(flag[0].length);
		}
	}
	if (kw === 'ENV') {
		const key = /^[^=\s]+=/.exec(rest);
		if (key) {
			out.push({ kind: 'env-key', text: key[0] });
			rest = rest.slice(key[0].length);
		}
	}
	if (rest) out.push({ kind: 'text', text: rest });
	return out;
}

export function tokenClass(t: Token): string {
	switch (t.kind) {
		case 'keyword':
			return 'kw kw-' + t.keyword!.toLowerCase();
		case 'unknown':
			return 'kw-unknown';
		case 'flag':
			return 'flag';
		case 'env-key':
			return 'env-key';
		case 'comment':
			return 'comment';
		default:
			return '';
	}
}

export function escapeHtml(s: string): string {
	return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

// highlightRecipe renders text (lines separated by \n) as HTML spans; the text content of the result
// equals text.
export function highlightRecipe(text: string): string {
	return text
		.split('\n')
		.map((line) =>
			tokenizeLine(line)
				.map((t) => {
					const cls = tokenClass(t);
					return cls ? `<span class="${cls}">${escapeHtml(t.text)}</span>` : escapeHtml(t.text);
				})
				.join('')
		)
		.join('\n');
}

// recipeLines turns the editor's text into the API's recipe array: one element per line, blank lines
// and comments kept (the server ignores them, and its line numbers count them).
export function recipeLines(text: string): string[] {
	const lines = text.replace(/\r\n/g, '\n').split('\n');
	while (lines.length && lines[lines.length - 1].trim() === '') lines.pop();
	return lines;
}

const ARCHIVE = /\.(tar|tar\.gz|tgz|zip)$/i;

export function isArchiveName(name: string): boolean {
	return ARCHIVE.test(name);
}
