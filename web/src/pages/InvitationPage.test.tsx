import { render, screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { expect, test } from 'vitest';
import { currentSession, signIn } from '../session';
import { fakeApi } from '../test/fakeApi';
import { InvitationPage } from './InvitationPage';

const TOKEN = 'tok_3f9a-b2';

function signInAsGrace() {
  signIn({
    access_token: 'token-g',
    expires_in: 3600,
    user: { id: 'u-grace', email: 'grace@example.com', name: 'Grace Hopper' },
    account: { id: 'acct-grace', name: 'Grace Hopper', role: 'owner', plan_id: 'free' },
  });
}

test('signed out, it offers to sign in or register, and to come back here after', async () => {
  history.replaceState(null, '', `/invitations/${TOKEN}`);
  render(<InvitationPage />);
  const back = encodeURIComponent(`/invitations/${TOKEN}`);
  expect(screen.getByRole('link', { name: 'Sign in to accept' }).getAttribute('href')).toBe(`/login?next=${back}`);
  expect(screen.getByRole('link', { name: 'Create an account' }).getAttribute('href')).toBe(`/register?next=${back}`);
  expect(screen.queryByRole('button', { name: /Join/ })).toBeNull();
});

test('joining switches the session to the joined account and opens the account page', async () => {
  const calls = fakeApi({
    [`POST /api/invitations/${TOKEN}/accept`]: {
      body: { id: 'acct-ada', name: 'Analytical Engines', role: 'member', plan_id: 'pro' },
    },
  });
  history.replaceState(null, '', `/invitations/${TOKEN}`);
  signInAsGrace();
  const user = userEvent.setup();
  render(<InvitationPage />);

  await user.click(screen.getByRole('button', { name: 'Join the team' }));
  await waitFor(() => expect(location.pathname).toBe('/account'));
  expect(calls.map((c) => `${c.method} ${c.path}`)).toEqual([`POST /api/invitations/${TOKEN}/accept`]);
  expect(currentSession()?.account).toEqual({ id: 'acct-ada', name: 'Analytical Engines', role: 'member', plan_id: 'pro' });
  expect(location.pathname + location.search).toBe('/account?joined=1');
});

test('a used, withdrawn or expired invitation is said to be no longer valid', async () => {
  fakeApi({
    [`POST /api/invitations/${TOKEN}/accept`]: {
      status: 404,
      body: { error: { code: 'invitation_not_found', message: 'the invitation is not found' } },
    },
  });
  history.replaceState(null, '', `/invitations/${TOKEN}`);
  signInAsGrace();
  const user = userEvent.setup();
  render(<InvitationPage />);

  await user.click(screen.getByRole('button', { name: 'Join the team' }));
  expect((await screen.findByRole('alert')).textContent).toBe('This invitation is no longer valid');
  expect(screen.queryByRole('button', { name: 'Join the team' })).toBeNull();
  expect(currentSession()?.account?.id).toBe('acct-grace');
  expect(location.pathname).toBe(`/invitations/${TOKEN}`);
});
