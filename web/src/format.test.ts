import { describe, expect, test } from 'vitest';
import type { Plan } from './api/types';
import { annualSaving, bestSavingPercent, formatDate, formatMoney } from './format';
import { plans } from './test/fakeApi';

const catalog = plans.plans as Plan[];
const pro = catalog.find((p) => p.id === 'pro')!;

/** Intl puts a no-break space between a code and the number. */
const plain = (s: string) => s.replace(/\u00a0/g, ' ');

describe('formatMoney', () => {
  test('divides cents by 100 exactly once', () => {
    expect(formatMoney(9900, 'usd')).toBe('$99.00');
    expect(formatMoney(99000, 'usd')).toBe('$990.00');
    expect(formatMoney(118800, 'usd')).toBe('$1,188.00');
    expect(formatMoney(5, 'usd')).toBe('$0.05');
    expect(formatMoney(0, 'usd')).toBe('$0.00');
  });

  test('uses the currency’s own minor unit', () => {
    expect(formatMoney(500, 'jpy')).toBe('¥500');
    expect(formatMoney(1050, 'eur')).toBe('€10.50');
    expect(formatMoney(-1234, 'gbp')).toBe('-£12.34');
    expect(plain(formatMoney(1500, 'kwd'))).toBe('KWD 1.500');
  });

  test('counts the minor unit Stripe counts, not the one Intl knows', () => {
    // Intl shows these in whole units; Stripe's amounts count hundredths.
    expect(plain(formatMoney(50000, 'isk'))).toBe('ISK 500.00');
    expect(plain(formatMoney(123456, 'huf'))).toBe('HUF 1,234.56');
    expect(plain(formatMoney(9900, 'twd'))).toBe('NT$99.00');
    expect(plain(formatMoney(9900, 'ugx'))).toBe('UGX 9,900');
  });
});

test('dates are days in UTC, whatever the browser’s zone', () => {
  expect(formatDate('2026-11-30T23:59:59Z')).toBe('Nov 30, 2026');
  expect(formatDate('2026-12-01T00:00:00Z')).toBe('Dec 1, 2026');
});

describe('annual saving', () => {
  test('is twelve monthly payments less the annual price', () => {
    // 12 × $99.00 = $1,188.00; annual $990.00.
    expect(annualSaving(pro)).toEqual({ amount: 19800, currency: 'usd', percent: 16 });
  });

  test('is nothing for plans without both prices', () => {
    expect(annualSaving(catalog.find((p) => p.id === 'free')!)).toBeNull();
    expect(annualSaving(catalog.find((p) => p.id === 'enterprise')!)).toBeNull();
    expect(bestSavingPercent(catalog)).toBe(16);
  });
});
