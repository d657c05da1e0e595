import { describe, expect, it } from 'vitest';
import { poolSummary, wholeNumber } from './pool';

describe('pool', () => {
	it('summarises a pool, with ready only when reported', () => {
		expect(poolSummary(undefined)).toBe('off');
		expect(poolSummary({ size: 0 })).toBe('off');
		expect(poolSummary({ size: 2 })).toBe('2 per host');
		expect(poolSummary({ size: 2, ready: 1 })).toBe('2 per host · 1 ready');
		expect(poolSummary({ size: 0, ready: 0 })).toBe('off · 0 ready');
	});
	it('reads whole numbers from inputs and leaves ranges to the API', () => {
		expect(wholeNumber(3)).toBe(3);
		expect(wholeNumber('16')).toBe(16);
		expect(wholeNumber(65)).toBe(65);
		expect(wholeNumber(-1)).toBe(-1);
		expect(wholeNumber(null)).toBeNull();
		expect(wholeNumber(undefined)).toBeNull();
		expect(wholeNumber('')).toBeNull();
		expect(wholeNumber(1.5)).toBeNull();
		expect(wholeNumber('abc')).toBeNull();
	});
});
