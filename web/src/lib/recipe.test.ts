import { describe, expect, it } from 'vitest';
import { highlightRecipe, isArchiveName, recipeLines, tokenizeLine } from './recipe';

const strip = (html: string) =>
	html.replace(/<[^>]+>/g, '').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&amp;/g, '&');

describe('recipe highlighter', () => {
	it('colours every instruction keyword, case-insensitively', () => {
		for (const kw of ['RUN', 'START', 'ENV', 'WORKDIR', 'USER', 'COPY']) {
			const html = highlightRecipe(`${kw.toLowerCase()} x`);
			expect(html).toContain(`<span class="kw kw-${kw.toLowerCase()}">${kw.toLowerCase()}</span>`);
		}
	});

	it('marks unknown instructions, comments, RUN flags and ENV keys', () => {
		expect(tokenizeLine('FROM debian')[0]).toEqual({ kind: 'unknown', text: 'FROM' });
		expect(tokenizeLine('  # note')).toEqual([
			{ kind: 'space', text: '  ' },
			{ kind: 'comment', text: '# note' }
		]);
		expect(tokenizeLine('RUN --timeout=5m make')).toEqual([
			{ kind: 'keyword', text: 'RUN', keyword: 'RUN' },
			{ kind: 'space', text: ' ' },
			{ kind: 'flag', text: '--timeout=5m' },
			{ kind: 'text', text: ' make' }
		]);
		expect(tokenizeLine('ENV GREETING=a b=c')).toEqual([
			{ kind: 'keyword', text: 'ENV', keyword: 'ENV' },
			{ kind: 'space', text: ' ' },
			{ kind: 'env-key', text: 'GREETING=' },
			{ kind: 'text', text: 'a b=c' }
		]);
	});

	it('keeps whitespace exactly and escapes HTML', () => {
		const text = 'RUN   echo  "<b>&"\n\n\tWORKDIR /my dir  \nCOPY a  b';
		const html = highlightRecipe(text);
		expect(strip(html)).toBe(text);
		expect(html).not.toContain('<b>');
		expect(html).toContain('&lt;b&gt;&amp;');
	});

	it('turns the editor text into recipe lines and recognises archives', () => {
		expect(recipeLines('RUN a\r\n\n# c\nUSER x\n\n')).toEqual(['RUN a', '', '# c', 'USER x']);
		for (const n of ['a.tar', 'a.tar.gz', 'a.TGZ', 'a.zip']) expect(isArchiveName(n)).toBe(true);
		for (const n of ['a.gz', 'a.rar', 'tar']) expect(isArchiveName(n)).toBe(false);
	});
});

import { highlightCode } from './codehl';
describe('file viewer highlighter', () => {
	it('keeps the text and marks comments, strings and keywords', () => {
		const src = 'if [ "$a" = 1 ]; then # <x>\n  echo \'hi\'\nfi\n';
		const html = highlightCode(src);
		expect(strip(html)).toBe(src);
		expect(html).toContain('<span class="k">if</span>');
		expect(html).toContain('<span class="s">&quot;$a&quot;</span>');
		expect(html).toContain('<span class="c"># &lt;x&gt;</span>');
	});
});
