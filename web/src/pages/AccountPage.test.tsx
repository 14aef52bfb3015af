import { render, screen, within } from '@testing-library/react';
import { expect, test, vi } from 'vitest';
import type { AccountSummary, Plan, Subscription, UserProfile } from '../api/types';
import { currentSession, signIn } from '../session';
import { fakeApi, plans } from '../test/fakeApi';
import { AccountPage } from './AccountPage';

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

const engines: AccountSummary = { id: 'acct-ada', name: 'Analytical Engines', role: 'member', plan_id: 'pro' };
const own: AccountSummary = { id: 'acct-grace', name: 'Grace Hopper', role: 'owner', plan_id: 'free' };

const graceProfile: UserProfile = {
  id: 'u-grace',
  email: 'grace@example.com',
  name: 'Grace Hopper',
  email_verified: true,
  created_at: '2026-11-20T15:30:00Z',
};

function routes(accounts: AccountSummary[], me: UserProfile = graceProfile) {
  return {
    'GET /api/me': { body: me },
    'GET /api/accounts': { body: { accounts } },
    'GET /api/plans': { body: plans },
    'GET /api/billing/subscription': { body: proMonthly },
    'GET /api/usage': { body: { plan: 'pro', usage: {} } },
    'GET /api/billing/invoices': { body: { invoices: [], next_starting_after: null } },
    'GET /api/account/members': {
      body: {
        members: [{ user_id: 'u-grace', email: 'grace@example.com', name: 'Grace Hopper', role: 'member', joined_at: '2026-11-20T15:30:00Z' }],
        invitations: [],
        seats: { used: 1, limit: 10 },
      },
    },
  };
}

function signInAsGrace(account: AccountSummary) {
  signIn({
    access_token: 'token-g',
    expires_in: 3600,
    user: { id: 'u-grace', email: 'grace@example.com', name: 'Grace Hopper' },
    account,
  });
}

/** Which account each call named. */
function recordAccountHeaders() {
  const seen: string[] = [];
  const fetch = globalThis.fetch;
  vi.stubGlobal('fetch', async (r: Request) => {
    seen.push(`${new URL(r.url).pathname} ${r.headers.get('x-account-id')}`);
    return fetch(r);
  });
  return seen;
}

test('a member sees the plan, usage and team, but no plan or billing controls', async () => {
  fakeApi(routes([own, engines]));
  const seen = recordAccountHeaders();
  signInAsGrace(engines);
  render(<AccountPage />);

  const current = await screen.findByRole('region', { name: 'Current plan' });
  expect(within(current).getByTestId('current-plan').textContent).toBe('Professional');
  expect(screen.getByTestId('account-role').textContent).toBe('Member');
  expect(screen.getByRole('combobox', { name: 'Account' })).toHaveProperty('value', 'acct-ada');
  await screen.findByRole('region', { name: 'Team' });
  expect(screen.queryByRole('button', { name: /Cancel subscription|Manage payment details|Upgrade|Switch to/ })).toBeNull();
  expect(screen.queryByRole('region', { name: /Change plan|Upgrade/ })).toBeNull();
  expect(screen.queryByLabelText('Email address')).toBeNull();
  expect(screen.getByText(/Only owners and admins can change the plan and billing\./)).toBeTruthy();
  expect(seen).toContain('/api/billing/subscription acct-ada');
});

test('an owner sees the plan and billing controls and the invitation form', async () => {
  fakeApi(routes([{ ...engines, role: 'owner' }]));
  signInAsGrace({ ...engines, role: 'owner' });
  render(<AccountPage />);
  await screen.findByRole('button', { name: 'Cancel subscription' });
  expect(screen.getByRole('button', { name: 'Manage payment details' })).toBeTruthy();
  expect(screen.getByRole('region', { name: 'Change plan' })).toBeTruthy();
  expect(await screen.findByLabelText('Email address')).toBeTruthy();
  expect(screen.getByTestId('account-name').textContent).toBe('Analytical Engines');
});

test('removed from the session’s account, the page says so and shows the user’s own', async () => {
  fakeApi(routes([own]));
  const seen = recordAccountHeaders();
  signInAsGrace(engines);
  render(<AccountPage />);

  expect((await screen.findByText(/You are no longer a member of/)).textContent).toBe(
    'You are no longer a member of Analytical Engines. Showing Grace Hopper instead.',
  );
  await screen.findByRole('region', { name: 'Current plan' });
  expect(currentSession()?.account?.id).toBe('acct-grace');
  expect(screen.getByTestId('account-role').textContent).toBe('Owner');
  expect(seen.filter((s) => s.startsWith('/api/billing/subscription'))).toEqual(['/api/billing/subscription acct-grace']);
});

test('the profile is asked again: an email confirmed elsewhere drops the notice, an unconfirmed one shows it', async () => {
  fakeApi(routes([own], { ...graceProfile, email_verified: false }));
  signInAsGrace(own);
  const { unmount } = render(<AccountPage />);
  const notice = await screen.findByRole('region', { name: 'Confirm your email address' });
  expect(notice.textContent).toContain('We sent a link to grace@example.com.');
  expect(currentSession()?.emailVerified).toBe(false);
  unmount();

  // Confirmed in another tab since: the next visit asks again.
  fakeApi(routes([own]));
  render(<AccountPage />);
  await screen.findByRole('region', { name: 'Current plan' });
  await vi.waitFor(() => expect(currentSession()?.emailVerified).toBe(true));
  expect(screen.queryByRole('region', { name: 'Confirm your email address' })).toBeNull();
});

const documents = (used: number, held: number, limit: number) => ({
  metric: 'documents',
  limit_name: 'documents_per_month',
  used,
  held,
  limit,
  remaining: Math.max(0, limit - used - held),
  window: { start: '2026-11-01T00:00:00Z', end: '2026-12-01T00:00:00Z' },
  resets_at: '2026-12-01T00:00:00Z',
});

test('a limit reached by the services’ reports shows as full, with the upgrade that lifts it', async () => {
  fakeApi({
    ...routes([own]),
    'GET /api/usage': { body: { plan: 'free', usage: { documents: documents(49, 1, 50) } } },
  });
  signInAsGrace(own);
  render(<AccountPage />);
  const usage = await screen.findByRole('region', { name: 'Usage' });
  const prompt = await within(usage).findByRole('alert');
  expect(prompt.className).toBe('quota');
  expect(within(prompt).getByText(
    "Documents this month: the Free plan's limit of 50 is reached, and KRAFTD refuses more until Dec 1, 2026.",
  )).toBeTruthy();
  expect(within(prompt).getByRole('button', { name: 'Upgrade to Professional' })).toBeTruthy();
  expect(within(usage).getByText(/49 of 50 documents · 1 held for work in progress/)).toBeTruthy();
});

test('below the limit there is no prompt; a member at it is told who can upgrade', async () => {
  fakeApi({
    ...routes([engines]),
    'GET /api/usage': { body: { plan: 'pro', usage: { documents: documents(999, 0, 1000) } } },
  });
  signInAsGrace(engines);
  const { unmount } = render(<AccountPage />);
  let usage = await screen.findByRole('region', { name: 'Usage' });
  await within(usage).findByText(/999 of 1,000 documents/);
  expect(within(usage).queryByRole('alert')).toBeNull();
  unmount();

  fakeApi({
    ...routes([engines]),
    'GET /api/usage': { body: { plan: 'pro', usage: { documents: documents(1000, 0, 1000) } } },
  });
  render(<AccountPage />);
  usage = await screen.findByRole('region', { name: 'Usage' });
  const prompt = await within(usage).findByRole('alert');
  expect(prompt.textContent).toContain('Ask an owner or admin of this account to upgrade to Enterprise.');
  expect(within(prompt).queryByRole('button')).toBeNull();
});
