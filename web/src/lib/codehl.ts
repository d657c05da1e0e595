// A small, language-agnostic highlighter for the file viewer: comments, strings, numbers and common
// keywords. It returns HTML whose text content is the input, unchanged.
import { escapeHtml } from './recipe';

const KEYWORDS = new Set(
	'if then else elif fi for while do done case esac function return import from export const let var def class public private static new true false null None True False package func type struct interface go select defer async await try catch except finally raise throw in not and or with as yield'.split(
		' '
	)
);

const TOKEN = /(#[^\n]*|\/\/[^\n]*|\/\*[\s\S]*?\*\/)|("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)|(\b\d+(?:\.\d+)?\b)|([A-Za-z_][A-Za-z0-9_]*)/g;

export function highlightCode(text: string, hashComments = true): string {
	let out = '';
	let last = 0;
	for (const m of text.matchAll(TOKEN)) {
		const i = m.index!;
		out += escapeHtml(text.slice(last, i));
		const [all, comment, str, num, word] = m;
		if (comment && (hashComments || !comment.startsWith('#'))) out += `<span class="c">${escapeHtml(all)}</span>`;
		else if (str) out += `<span class="s">${escapeHtml(all)}</span>`;
		else if (num) out += `<span class="n">${escapeHtml(all)}</span>`;
		else if (word && KEYWORDS.has(word)) out += `<span class="k">${escapeHtml(all)}</span>`;
		else out += escapeHtml(all);
		last = i + all.length;
	}
	return out + escapeHtml(text.slice(last));
}
