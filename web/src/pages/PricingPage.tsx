import { useState } from 'react';
import { api, call } from '../api/client';
import type { BillingInterval, Plan, Subscription } from '../api/types';
import { ErrorMessage } from '../components/ErrorMessage';
import { IntervalToggle } from '../components/IntervalToggle';
import { PlanCard, type PlanAction } from '../components/PlanCard';
import { bestSavingPercent } from '../format';
import { navigate, useLocation } from '../router';
import { useSession } from '../session';
import { isLiveSubscription } from '../subscription';
import { useLoad } from '../useLoad';

export const SALES_EMAIL = 'mailto:sales@kraftd.io?subject=KRAFTD%20Enterprise';

export function PricingPage() {
  const { search } = useLocation();
  const session = useSession();
  const [interval, setInterval] = useState<BillingInterval>(
    search.get('interval') === 'annual' ? 'annual' : 'monthly',
  );
  const plans = useLoad(() => call(api.GET('/api/plans')).then((r) => r.plans), []);
  const subscription = useLoad<Subscription | null>(
    () => (session ? call(api.GET('/api/billing/subscription')) : Promise.resolve(null)),
    [session?.token],
  );
  const suggested = search.get('plan');

  function action(plan: Plan): PlanAction {
    if (plan.contact_sales) return { kind: 'contact', href: SALES_EMAIL };
    const sub = subscription.data;
    const onPlan = sub && sub.plan.id === plan.id;
    if (sub && onPlan && (plan.id === 'free' || (isLiveSubscription(sub) && sub.billing_interval === interval)))
      return { kind: 'current' };
    const chosenInterval = plan.prices.some((p) => p.interval === interval) ? interval : 'monthly';
    if (!session) {
      return {
        kind: 'select',
        label: plan.id === 'free' ? 'Start for free' : `Choose ${plan.name}`,
        onSelect: () => navigate(`/register?plan=${plan.id}&interval=${chosenInterval}`),
      };
    }
    if (plan.id === 'free') {
      // Leaving a paid plan is a cancellation at period end, done on the account page.
      return { kind: 'select', label: 'Manage subscription', onSelect: () => navigate('/account') };
    }
    return {
      kind: 'select',
      label: `Switch to ${plan.name}`,
      onSelect: () => navigate(`/account?change=${plan.id}&interval=${chosenInterval}`),
    };
  }

  return (
    <>
      <h1>Plans and pricing</h1>
      <p className="lead">Start free. Upgrade when your documents outgrow it.</p>
      <ErrorMessage error={plans.error} />
      {plans.data && (
        <>
          <IntervalToggle
            value={interval}
            onChange={setInterval}
            savingPercent={bestSavingPercent(plans.data)}
          />
          <div className="plans">
            {plans.data.map((plan) => (
              <PlanCard
                key={plan.id}
                plan={plan}
                interval={interval}
                action={action(plan)}
                highlighted={suggested === plan.id}
              />
            ))}
          </div>
        </>
      )}
      {!plans.data && !plans.error && <p role="status">Loading plans…</p>}
    </>
  );
}
