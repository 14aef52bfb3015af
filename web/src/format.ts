// Display formats. Amounts arrive as integer minor units (cents) with a
// currency; they are divided exactly once, by the currency's own number of
// minor units, here and nowhere else.
import type { Plan } from './api/types';

const LOCALE = 'en-US';

// The minor unit is Stripe's, which the amounts count in, not the one Intl
// knows (CLDR's): Stripe keeps ISK, HUF and TWD two-decimal in its API, where
// Intl shows them in whole units. The same table as the service's
// (`Currency::minor_digits`, crates/domain/src/money.rs);
// https://docs.stripe.com/currencies#zero-decimal.
const ZERO_DECIMAL = new Set([
  'bif', 'clp', 'djf', 'gnf', 'jpy', 'kmf', 'krw', 'mga', 'pyg', 'rwf', 'ugx', 'vnd', 'vuv',
  'xaf', 'xof', 'xpf',
]);
const THREE_DECIMAL = new Set(['bhd', 'jod', 'kwd', 'omr', 'tnd']);

function minorUnits(currency: string): number {
  const code = currency.toLowerCase();
  if (ZERO_DECIMAL.has(code)) return 0;
  if (THREE_DECIMAL.has(code)) return 3;
  return 2;
}

/** `9900, "usd"` → `$99.00`; `9900, "jpy"` → `¥9,900`. */
export function formatMoney(amount: number, currency: string): string {
  const digits = minorUnits(currency);
  return new Intl.NumberFormat(LOCALE, {
    style: 'currency',
    currency: currency.toUpperCase(),
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  }).format(amount / 10 ** digits);
}

/** Dates as a calendar day in UTC, the service's time zone: `Dec 24, 2026`. */
export function formatDate(iso: string): string {
  return new Intl.DateTimeFormat(LOCALE, { dateStyle: 'medium', timeZone: 'UTC' }).format(
    new Date(iso),
  );
}

export function formatCount(n: number): string {
  return new Intl.NumberFormat(LOCALE).format(n);
}

export interface AnnualSaving {
  /** Twelve monthly payments minus the annual price, in minor units. */
  amount: number;
  currency: string;
  /** Whole percent of the twelve monthly payments. */
  percent: number;
}

/** What paying yearly saves against twelve monthly payments, if anything. */
export function annualSaving(plan: Plan): AnnualSaving | null {
  const monthly = plan.prices.find((p) => p.interval === 'monthly');
  const annual = plan.prices.find((p) => p.interval === 'annual');
  if (!monthly || !annual || monthly.currency !== annual.currency) return null;
  const yearOfMonths = monthly.amount * 12;
  const amount = yearOfMonths - annual.amount;
  if (amount <= 0) return null;
  return { amount, currency: annual.currency, percent: Math.floor((amount * 100) / yearOfMonths) };
}

/** The best saving across plans, for the interval toggle's label. */
export function bestSavingPercent(plans: Plan[]): number | null {
  const percents = plans.map(annualSaving).flatMap((s) => (s ? [s.percent] : []));
  return percents.length ? Math.max(...percents) : null;
}
