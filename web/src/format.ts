// Display formats. Amounts arrive as integer minor units (cents) with a
// currency; they are divided exactly once, by the currency's own number of
// minor units, here and nowhere else.
import type { Plan } from './api/types';

const LOCALE = 'en-US';

function minorUnits(currency: string): number {
  return new Intl.NumberFormat(LOCALE, { style: 'currency', currency }).resolvedOptions()
    .maximumFractionDigits ?? 2;
}

/** `9900, "usd"` → `$99.00`. */
export function formatMoney(amount: number, currency: string): string {
  const code = currency.toUpperCase();
  const digits = minorUnits(code);
  return new Intl.NumberFormat(LOCALE, {
    style: 'currency',
    currency: code,
    minimumFractionDigits: digits,
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
