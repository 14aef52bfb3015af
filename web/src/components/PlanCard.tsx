import type { BillingInterval, Plan } from '../api/types';
import { annualSaving, formatMoney } from '../format';

export type PlanAction =
  | { kind: 'select'; label: string; onSelect: () => void }
  | { kind: 'current' }
  | { kind: 'contact'; href: string };

/** One plan on the pricing page: price for the chosen interval, what it includes, one action. */
export function PlanCard({
  plan,
  interval,
  action,
  highlighted,
}: {
  plan: Plan;
  interval: BillingInterval;
  action: PlanAction;
  highlighted?: boolean;
}) {
  const price = plan.prices.find((p) => p.interval === interval) ?? plan.prices[0];
  const saving = interval === 'annual' ? annualSaving(plan) : null;
  const headingId = `plan-${plan.id}`;
  return (
    <article
      className={`card plan${highlighted ? ' highlighted' : ''}`}
      aria-labelledby={headingId}
      data-plan={plan.id}
    >
      <h2 id={headingId}>{plan.name}</h2>
      <p className="description">{plan.description}</p>
      <p className="price">
        {plan.contact_sales || !price ? (
          <span className="amount">Custom pricing</span>
        ) : price.amount === 0 ? (
          <span className="amount">Free</span>
        ) : (
          <>
            <span className="amount">{formatMoney(price.amount, price.currency)}</span>
            <span className="per"> / {price.interval === 'annual' ? 'year' : 'month'}</span>
          </>
        )}
      </p>
      {saving && (
        <p className="saving">
          Save {formatMoney(saving.amount, saving.currency)} a year ({saving.percent}%) against
          monthly billing
        </p>
      )}
      <ul className="features">
        {plan.features.map((f) => (
          <li key={f}>{f}</li>
        ))}
      </ul>
      {action.kind === 'select' && (
        <button type="button" className="primary" onClick={action.onSelect}>
          {action.label}
        </button>
      )}
      {action.kind === 'current' && <p className="current-plan">Your current plan</p>}
      {action.kind === 'contact' && (
        <a className="button" href={action.href}>
          Contact sales
        </a>
      )}
    </article>
  );
}
