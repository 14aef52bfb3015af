import { render, screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { expect, test } from 'vitest';
import type { UserProfile } from '../api/types';
import { currentSession, signIn } from '../session';
import { accessibilityViolations } from '../test/axe';
import { fakeApi } from '../test/fakeApi';
import { unconfirmedAda } from '../test/users';
import { EmailNotice } from './EmailNotice';

const ada = unconfirmedAda;

function signInAs(user: UserProfile | Omit<UserProfile, 'email_verified'>) {
  signIn({ access_token: 'token-a', expires_in: 3600, user });
}

test('unconfirmed, it says where the link went and sends a new one on request', async () => {
  const calls = fakeApi({ 'POST /api/auth/verify-email/resend': { status: 202, body: ada } });
  signInAs(ada);
  const user = userEvent.setup();
  const { container } = render(<EmailNotice />);

  const notice = screen.getByRole('region', { name: 'Confirm your email address' });
  expect(within(notice).getByText(/We sent a link to/).textContent).toBe(
    'We sent a link to ada@example.com. Open it to confirm the address is yours: until you do, you cannot invite others to your team.',
  );
  expect(await accessibilityViolations(container)).toEqual([]);

  await user.click(within(notice).getByRole('button', { name: 'Send a new link' }));
  expect((await within(notice).findByRole('status')).textContent).toBe(
    'A new link is on its way to ada@example.com. Links sent before it no longer work.',
  );
  expect(calls.map((c) => `${c.method} ${c.path}`)).toEqual(['POST /api/auth/verify-email/resend']);
  expect(await accessibilityViolations(container)).toEqual([]);
});

test('confirmed meanwhile, a resend says so and the request for it goes away', async () => {
  fakeApi({ 'POST /api/auth/verify-email/resend': { status: 202, body: { ...ada, email_verified: true } } });
  signInAs(ada);
  const user = userEvent.setup();
  render(<EmailNotice />);

  await user.click(screen.getByRole('button', { name: 'Send a new link' }));
  expect((await screen.findByRole('status')).textContent).toBe('Your email address is confirmed already.');
  expect(currentSession()?.emailVerified).toBe(true);
  expect(screen.queryByRole('button', { name: 'Send a new link' })).toBeNull();
  expect(screen.queryByText(/We sent a link/)).toBeNull();
});

test('a failed resend shows the API’s message', async () => {
  fakeApi({
    'POST /api/auth/verify-email/resend': {
      status: 503,
      body: { error: { code: 'temporarily_unavailable', message: 'the service is busy: try again in a moment' } },
    },
  });
  signInAs(ada);
  const user = userEvent.setup();
  render(<EmailNotice />);
  await user.click(screen.getByRole('button', { name: 'Send a new link' }));
  expect((await screen.findByRole('alert')).textContent).toBe('the service is busy: try again in a moment');
});

test('nothing is shown when the email is confirmed, or not known to be unconfirmed, or signed out', () => {
  const { container, rerender } = render(<EmailNotice />);
  expect(container.innerHTML).toBe('');
  signInAs({ ...ada, email_verified: true });
  rerender(<EmailNotice />);
  expect(container.innerHTML).toBe('');
  const { email_verified: _, ...unknown } = ada;
  signInAs(unknown);
  rerender(<EmailNotice />);
  expect(container.innerHTML).toBe('');
});
