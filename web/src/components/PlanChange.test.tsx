import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { expect, test } from 'vitest';
import type { Plan, Subscription } from '../api/types';
import { fakeApi, plans } from '../test/fakeApi';
import { PlanChange } from './PlanChange';

const catalog = plans.plans as Plan[];
const pro = catalog.find((p) => p.id === 'pro')!;

const proMonthly: Subscription = {
  plan: { id: 'pro', name: pro.name, tier: 'pro', price: { amount: 9900, currency: 'usd', interval: 'monthly', lookup_key: 'pro_monthly' }, features: pro.features, limits: pro.limits },
  effective_plan: 'pro',
  status: 'active',
  renewal_date: '2026-12-24T13:29:07Z',
  auto_renew: true,
  billing_interval: 'monthly',
  cancel_at_period_end: false,
  current_period_end: '2026-12-24T13:29:07Z',
  grace_until: null,
  last_payment_status: null,
  pending_checkout_session_id: null,
  scheduled_change: null,
  trial_end: null,
};

test('the prorated charge is shown before anything is changed, and the change only on confirming', async () => {
  const calls = fakeApi({
    'POST /api/billing/preview-change': {
      body: { new_plan_id: 'pro', billing_interval: 'annual', amount_due_now: { amount: 89100, currency: 'usd' }, amount_due_now_decimal: '891.00', proration_date: '2027-03-10T12:00:00Z' },
    },
    'POST /api/billing/upgrade': {
      body: { subscription: { ...proMonthly, billing_interval: 'annual', plan: { ...proMonthly.plan, price: { amount: 99000, currency: 'usd', interval: 'annual', lookup_key: 'pro_annual' } } } },
    },
  });
  const changed: string[] = [];
  const user = userEvent.setup();
  render(
    <PlanChange
      subscription={proMonthly}
      plans={catalog}
      target={{ planId: 'pro', interval: 'annual' }}
      onChanged={(_, message) => changed.push(message)}
      onClose={() => {}}
    />,
  );

  const due = await screen.findByText(/Due now:/);
  expect(due.textContent).toBe('Due now: $891.00, prorated for the rest of your current billing period.');
  expect(calls.map((c) => c.path)).toEqual(['/api/billing/preview-change']);
  expect(calls[0]!.body).toEqual({ new_plan_id: 'pro', billing_interval: 'annual' });

  await user.click(screen.getByRole('button', { name: 'Confirm change' }));
  expect(calls.map((c) => c.path)).toEqual(['/api/billing/preview-change', '/api/billing/upgrade']);
  // The change is priced as the preview was.
  expect(calls[1]!.body).toEqual({ new_plan_id: 'pro', billing_interval: 'annual', proration_date: '2027-03-10T12:00:00Z' });
  expect(changed).toEqual(['You are now on Professional, billed annually.']);
});

test('a refused change shows the API’s message and changes nothing', async () => {
  fakeApi({
    'POST /api/billing/preview-change': {
      status: 422,
      body: { error: { code: 'invalid_field', field: 'new_plan_id', message: 'new_plan_id the subscription is already on this plan and interval' } },
    },
  });
  render(
    <PlanChange
      subscription={proMonthly}
      plans={catalog}
      target={{ planId: 'pro', interval: 'monthly' }}
      onChanged={() => {}}
      onClose={() => {}}
    />,
  );
  expect((await screen.findByRole('alert')).textContent).toBe(
    'new_plan_id the subscription is already on this plan and interval',
  );
  expect(screen.getByRole('button', { name: 'Confirm change' })).toHaveProperty('disabled', true);
});
