import { useEffect, useRef, useState } from 'react';
import { api, call } from '../api/client';
import type { PaidSelfServePlan, Plan, PlanChangePreview, Subscription } from '../api/types';
import { formatDate, formatMoney } from '../format';
import { isLiveSubscription, planName, type PlanTarget } from '../subscription';
import { ErrorMessage } from './ErrorMessage';

/**
 * A plan change, previewed before it is confirmed: the API says what it
 * bills now (prorated for a live subscription, the first period for a new
 * one), and only then does the user confirm.
 */
export function PlanChange({
  subscription,
  plans,
  target,
  onChanged,
  onClose,
}: {
  subscription: Subscription;
  plans: Plan[];
  target: PlanTarget;
  /** `charged`: the change billed now, so an invoice is on its way. */
  onChanged: (sub: Subscription, message: string, charged: boolean) => void;
  onClose: () => void;
}) {
  const [preview, setPreview] = useState<PlanChangePreview | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const heading = useRef<HTMLHeadingElement>(null);
  const live = isLiveSubscription(subscription);
  // changeTargets offers only paid self-serve plans.
  const body = { new_plan_id: target.planId as PaidSelfServePlan, billing_interval: target.interval };
  const name = planName(plans, target.planId);
  const price = plans
    .find((p) => p.id === target.planId)
    ?.prices.find((p) => p.interval === target.interval);

  useEffect(() => {
    heading.current?.focus();
    let stale = false;
    setPreview(null);
    setError(null);
    call(api.POST('/api/billing/preview-change', { body }))
      .then((p) => !stale && setPreview(p))
      .catch((e) => !stale && setError(e));
    return () => {
      stale = true;
    };
  }, [target.planId, target.interval]);

  async function confirm() {
    setBusy(true);
    setError(null);
    try {
      // The preview's moment, so the change bills what the user was shown.
      const quoted = preview ? { ...body, proration_date: preview.proration_date } : body;
      const answer = await call(api.POST('/api/billing/upgrade', { body: quoted }));
      if ('checkout_url' in answer) {
        // Payment happens at Stripe's checkout, which sends the user back.
        window.location.assign(answer.checkout_url);
        return;
      }
      onChanged(
        answer.subscription,
        answer.subscription.scheduled_change
          ? `Your change to ${name} (${target.interval}) is scheduled.`
          : `You are now on ${name}, billed ${target.interval === 'annual' ? 'annually' : 'monthly'}.`,
        (preview?.amount_due_now.amount ?? 0) > 0,
      );
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  }

  const due = preview?.amount_due_now;
  return (
    <section className="card plan-change" aria-labelledby="plan-change-heading">
      <h2 id="plan-change-heading" tabIndex={-1} ref={heading}>
        Change to {name}, billed {target.interval === 'annual' ? 'annually' : 'monthly'}
      </h2>
      {price && (
        <p>
          {formatMoney(price.amount, price.currency)} per{' '}
          {target.interval === 'annual' ? 'year' : 'month'}.
        </p>
      )}
      {!preview && !error && <p role="status">Working out what this costs…</p>}
      {due && (
        <p className="due" role="status">
          {due.amount > 0 ? (
            <>
              Due now: <strong>{formatMoney(due.amount, due.currency)}</strong>
              {live
                ? ', prorated for the rest of your current billing period.'
                : ', paid at checkout.'}
            </>
          ) : (
            <>
              Nothing is due now; the change takes effect
              {subscription.current_period_end
                ? ` on ${formatDate(subscription.current_period_end)}`
                : ' at the end of your billing period'}
              .
            </>
          )}
        </p>
      )}
      <ErrorMessage error={error} />
      <div className="actions">
        <button type="button" className="primary" onClick={confirm} disabled={!preview || busy}>
          {live ? 'Confirm change' : 'Continue to payment'}
        </button>
        <button type="button" onClick={onClose} disabled={busy}>
          Not now
        </button>
      </div>
    </section>
  );
}
