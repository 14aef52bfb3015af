// Facts about a subscription the pages need, derived in one place.
import type { BillingInterval, Plan, PlanId, Subscription } from './api/types';

/** A paid subscription Stripe is billing now: changes to it are prorated. */
export function isLiveSubscription(sub: Subscription): boolean {
  return (
    sub.plan.id !== 'free' && ['active', 'trialing', 'past_due'].includes(sub.status)
  );
}

export interface PlanTarget {
  planId: PlanId;
  interval: BillingInterval;
}

/** Self-serve plans and intervals this subscription can move to (not Free:
 * that is a cancellation; not sales-led plans). */
export function changeTargets(sub: Subscription, plans: Plan[]): PlanTarget[] {
  const live = isLiveSubscription(sub);
  return plans
    .filter((p) => p.id !== 'free' && !p.contact_sales)
    .flatMap((p) => p.prices.map((price) => ({ planId: p.id, interval: price.interval })))
    .filter((t) => !(live && t.planId === sub.plan.id && t.interval === sub.billing_interval));
}

/** The tiers, lowest first, as the API orders them. */
const TIERS: readonly PlanId[] = ['free', 'pro', 'enterprise'];

/** The next tier up, the one the API names in its upgrade hints
 * (`upgrade_to`); `undefined` at the top. */
export function nextTier(plan: PlanId): PlanId | undefined {
  return TIERS[TIERS.indexOf(plan) + 1];
}

export function planName(plans: Plan[], id: string): string {
  return plans.find((p) => p.id === id)?.name ?? id;
}

export const STATUS_TEXT: Record<Subscription['status'], string> = {
  active: 'Active',
  trialing: 'Trial',
  past_due: 'Payment overdue',
  canceled: 'Canceled',
  incomplete: 'Awaiting payment',
  incomplete_expired: 'Checkout expired',
  unpaid: 'Unpaid',
  paused: 'Paused',
};
