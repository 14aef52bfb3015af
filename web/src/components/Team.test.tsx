import { render, screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { expect, test } from 'vitest';
import type { Plan, Team as TeamView } from '../api/types';
import { currentSession, signIn } from '../session';
import { accessibilityViolations } from '../test/axe';
import type { PlanTarget } from '../subscription';
import { fakeApi, plans } from '../test/fakeApi';
import { Team } from './Team';

const catalog = plans.plans as Plan[];

const ada = { user_id: 'u-ada', email: 'ada@example.com', name: 'Ada Lovelace', role: 'owner', joined_at: '2026-11-02T09:00:00Z' } as const;
const grace = { user_id: 'u-grace', email: 'grace@example.com', name: 'Grace Hopper', role: 'member', joined_at: '2026-11-20T15:30:00Z' } as const;
const linusInvite = {
  id: 'inv-1',
  email: 'linus@example.com',
  role: 'admin',
  invited_by: 'u-ada',
  created_at: '2026-11-24T10:00:00Z',
  expires_at: '2026-12-01T10:00:00Z',
} as const;

const team: TeamView = {
  members: [ada, grace],
  invitations: [linusInvite],
  seats: { used: 3, limit: 10 },
};

function signInAs(
  who: { user_id: string; email: string; name: string },
  role: 'owner' | 'admin' | 'member',
  emailVerified = true,
) {
  signIn({
    access_token: 'token-1',
    expires_in: 3600,
    user: { id: who.user_id, email: who.email, name: who.name, email_verified: emailVerified },
    account: { id: 'acct-1', name: 'Analytical Engines', role, plan_id: 'pro' },
  });
}

test('lists the members with their roles and join dates, the pending invitations and the seats', async () => {
  fakeApi({ 'GET /api/account/members': { body: team } });
  signInAs(ada, 'owner');
  render(<Team role="owner" plans={catalog} />);

  const rows = await screen.findAllByTestId('member');
  expect(rows.map((r) => r.textContent)).toEqual([
    expect.stringContaining('Ada Lovelace (you)ada@example.comOwnerNov 2, 2026'),
    expect.stringContaining('Grace Hoppergrace@example.com'),
  ]);
  expect(within(rows[1]!).getByRole('combobox', { name: 'Role of Grace Hopper' })).toHaveProperty('value', 'member');
  expect(within(rows[1]!).getByText('Nov 20, 2026')).toBeTruthy();
  // The owner is neither removed nor demoted here.
  expect(within(rows[0]!).queryByRole('button')).toBeNull();
  expect(within(rows[0]!).queryByRole('combobox')).toBeNull();

  const invitation = screen.getByTestId('invitation');
  expect(invitation.textContent).toBe('linus@example.comAdminNov 24, 2026Dec 1, 2026Withdraw');

  const seats = screen.getByRole('meter', { name: 'Seats' });
  expect(seats.getAttribute('aria-valuenow')).toBe('3');
  expect(seats.getAttribute('aria-valuemax')).toBe('10');
  expect(screen.getByText('3 of 10 members')).toBeTruthy();
});

test('unlimited seats show as a count', async () => {
  fakeApi({ 'GET /api/account/members': { body: { ...team, seats: { used: 3, limit: null } } } });
  signInAs(ada, 'owner');
  render(<Team role="owner" plans={catalog} />);
  expect(await screen.findByText('3 members · unlimited')).toBeTruthy();
  expect(screen.queryByRole('meter')).toBeNull();
});

test('an invitation is sent with the chosen role, and then listed', async () => {
  let invited = false;
  const newInvite = { id: 'inv-2', email: 'alan@example.com', role: 'admin', invited_by: 'u-ada', created_at: '2026-11-25T08:00:00Z', expires_at: '2026-12-02T08:00:00Z' } as const;
  const calls = fakeApi({
    'GET /api/account/members': () => ({
      body: invited ? { ...team, invitations: [linusInvite, newInvite], seats: { used: 4, limit: 10 } } : team,
    }),
    'POST /api/account/invitations': () => {
      invited = true;
      return { status: 201, body: newInvite };
    },
  });
  signInAs(ada, 'owner');
  const user = userEvent.setup();
  render(<Team role="owner" plans={catalog} />);

  await user.type(await screen.findByLabelText('Email address'), 'alan@example.com');
  await user.selectOptions(screen.getByLabelText('Role'), 'admin');
  await user.click(screen.getByRole('button', { name: 'Send invitation' }));

  expect((await screen.findByRole('status')).textContent).toBe('Invitation sent to alan@example.com.');
  expect(calls.find((c) => c.method === 'POST')!.body).toEqual({ email: 'alan@example.com', role: 'admin' });
  await screen.findByText('4 of 10 members');
  expect(screen.getAllByTestId('invitation').map((r) => within(r).getByRole('rowheader').textContent)).toEqual([
    'linus@example.com',
    'alan@example.com',
  ]);
  // The form is ready for the next one.
  expect(screen.getByLabelText('Email address')).toHaveProperty('value', '');
});

test('an invitation past the plan’s seats shows the API’s message and the upgrade that lifts it', async () => {
  fakeApi({
    'GET /api/account/members': { body: { members: [ada], invitations: [], seats: { used: 1, limit: 1 } } },
    'POST /api/account/invitations': {
      status: 403,
      headers: { 'x-upgrade-url': 'https://kraftd.io/pricing?plan=pro' },
      body: {
        error: {
          code: 'quota_exceeded',
          message: 'the team_members limit of the free plan is reached',
          metric: 'team_members',
          limit: 'team_members',
          limit_value: 1,
          usage: 1,
          requested: 1,
          plan: 'free',
          upgrade_to: 'pro',
        },
      },
    },
  });
  signInAs(ada, 'owner');
  const upgrades: PlanTarget[] = [];
  const user = userEvent.setup();
  render(<Team role="owner" plans={catalog} onUpgrade={(t) => upgrades.push(t)} />);

  await screen.findByText('1 of 1 member');
  await user.type(screen.getByLabelText('Email address'), 'grace@example.com');
  await user.click(screen.getByRole('button', { name: 'Send invitation' }));

  const prompt = await screen.findByRole('alert');
  expect(prompt.className).toBe('quota');
  expect(within(prompt).getByText('the team_members limit of the free plan is reached')).toBeTruthy();
  await user.click(within(prompt).getByRole('button', { name: 'Upgrade to Professional' }));
  expect(upgrades).toEqual([{ planId: 'pro', interval: 'monthly' }]);
  // Nothing was added.
  expect(screen.queryByTestId('invitation')).toBeNull();
});

test('a second invitation to the same address shows the API’s message', async () => {
  fakeApi({
    'GET /api/account/members': { body: team },
    'POST /api/account/invitations': {
      status: 409,
      body: { error: { code: 'already_invited', message: 'linus@example.com is already invited' } },
    },
  });
  signInAs(ada, 'owner');
  const user = userEvent.setup();
  render(<Team role="owner" plans={catalog} />);
  await user.type(await screen.findByLabelText('Email address'), 'linus@example.com');
  await user.click(screen.getByRole('button', { name: 'Send invitation' }));
  expect((await screen.findByRole('alert')).textContent).toBe('linus@example.com is already invited');
});

test('an admin removes a member after confirming, changes a role and withdraws an invitation', async () => {
  let current: TeamView = team;
  const calls = fakeApi({
    'GET /api/account/members': () => ({ body: current }),
    'DELETE /api/account/members/u-grace': () => {
      current = { ...current, members: [ada], seats: { used: current.seats.used - 1, limit: 10 } };
      return { status: 204, body: undefined };
    },
    'PATCH /api/account/members/u-grace': () => {
      current = { ...current, members: [ada, { ...grace, role: 'admin' }] };
      return { body: { ...grace, role: 'admin' } };
    },
    'DELETE /api/account/invitations/inv-1': () => {
      current = { ...current, invitations: [], seats: { used: current.seats.used - 1, limit: 10 } };
      return { status: 204, body: undefined };
    },
  });
  signInAs(ada, 'owner');
  const user = userEvent.setup();
  render(<Team role="owner" plans={catalog} />);

  await user.selectOptions(await screen.findByRole('combobox', { name: 'Role of Grace Hopper' }), 'admin');
  expect((await screen.findByRole('status')).textContent).toBe('Grace Hopper is now an admin.');
  expect(calls.find((c) => c.method === 'PATCH')!.body).toEqual({ role: 'admin' });

  await user.click(screen.getByRole('button', { name: 'Withdraw the invitation to linus@example.com' }));
  expect((await screen.findByRole('status')).textContent).toBe('The invitation to linus@example.com was withdrawn.');
  await screen.findByText('2 of 10 members');
  expect(screen.queryByTestId('invitation')).toBeNull();

  await user.click(screen.getByRole('button', { name: 'Remove Grace Hopper' }));
  expect(calls.filter((c) => c.method === 'DELETE')).toHaveLength(1);
  await user.click(screen.getByRole('button', { name: 'Yes, remove Grace Hopper' }));
  expect((await screen.findByRole('status')).textContent).toBe('Grace Hopper was removed from the account.');
  await screen.findByText('1 of 10 members');
  expect(screen.getAllByTestId('member')).toHaveLength(1);
  expect(calls.filter((c) => c.method === 'DELETE').map((c) => c.path)).toEqual([
    '/api/account/invitations/inv-1',
    '/api/account/members/u-grace',
  ]);
});

test('a member sees the team but no controls to change it', async () => {
  const calls = fakeApi({ 'GET /api/account/members': { body: team } });
  signInAs(grace, 'member');
  render(<Team role="member" plans={catalog} />);

  const rows = await screen.findAllByTestId('member');
  expect(rows).toHaveLength(2);
  expect(screen.getByTestId('invitation').textContent).toBe('linus@example.comAdminNov 24, 2026Dec 1, 2026');
  expect(screen.getByRole('meter', { name: 'Seats' })).toBeTruthy();
  expect(screen.queryByRole('combobox')).toBeNull();
  expect(screen.queryByRole('button', { name: /Remove|Withdraw|Send invitation/ })).toBeNull();
  expect(screen.queryByLabelText('Email address')).toBeNull();
  // Their own row offers to leave, nothing else.
  expect(screen.getAllByRole('button').map((b) => b.textContent)).toEqual(['Leave']);
  expect(within(rows[1]!).getByRole('rowheader').textContent).toBe('Grace Hopper (you)');
  expect(calls.map((c) => `${c.method} ${c.path}`)).toEqual(['GET /api/account/members']);
});

test('with an unconfirmed email the invitation form says inviting needs it first', async () => {
  fakeApi({ 'GET /api/account/members': { body: team } });
  signInAs(ada, 'owner', false);
  const { container } = render(<Team role="owner" plans={catalog} />);

  const form = await screen.findByRole('form', { name: 'Invite someone' });
  const why = 'Inviting someone needs a confirmed email address. Open the link we sent to ada@example.com first.';
  expect(within(form).getByText(/Inviting someone needs/).textContent).toBe(why);
  expect(form.getAttribute('aria-describedby')).toBe(within(form).getByText(/Inviting someone needs/).id);
  expect(await accessibilityViolations(container)).toEqual([]);
});

test('a confirmed email needs no word on it', async () => {
  fakeApi({ 'GET /api/account/members': { body: team } });
  signInAs(ada, 'owner');
  render(<Team role="owner" plans={catalog} />);
  const form = await screen.findByRole('form', { name: 'Invite someone' });
  expect(within(form).queryByText(/confirmed email/)).toBeNull();
  expect(form.getAttribute('aria-describedby')).toBeNull();
});

test('refused for an unconfirmed email, the form says so and the session learns it', async () => {
  const calls = fakeApi({
    'GET /api/account/members': { body: team },
    'POST /api/account/invitations': {
      status: 403,
      body: {
        error: {
          code: 'email_not_verified',
          message: 'verify your email address first: follow the link we emailed you, or ask for a new one',
        },
      },
    },
  });
  // Signed in before the service said otherwise.
  signInAs(ada, 'owner');
  const user = userEvent.setup();
  const { container } = render(<Team role="owner" plans={catalog} />);

  await user.type(await screen.findByLabelText('Email address'), 'alan@example.com');
  await user.click(screen.getByRole('button', { name: 'Send invitation' }));

  const alert = await screen.findByRole('alert');
  expect(alert.textContent).toBe(
    'Confirm your email address before inviting anyone.' +
      'verify your email address first: follow the link we emailed you, or ask for a new one',
  );
  expect(currentSession()?.emailVerified).toBe(false);
  expect(calls.filter((c) => c.method === 'POST')).toHaveLength(1);
  expect(screen.getAllByTestId('invitation')).toHaveLength(1);
  expect(await accessibilityViolations(container)).toEqual([]);
});
