import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { StrictMode } from 'react';
import { expect, test } from 'vitest';
import { currentSession, signIn } from '../session';
import { accessibilityViolations } from '../test/axe';
import { fakeApi } from '../test/fakeApi';
import { unconfirmedAda } from '../test/users';
import { VerifyEmailPage, verificationToken } from './VerifyEmailPage';

// Each test its own link: the page posts a link once per page load.
const link = (n: number) => `0f9e8d7c6b5a49382716a5b4c3d2e1f${n}-x${'A'.repeat(42)}`;

const ada = unconfirmedAda;

function signInAsAda() {
  signIn({ access_token: 'token-a', expires_in: 3600, user: ada });
}

function show(token: string) {
  history.replaceState(null, '', `/verify-email/${token}`);
  return render(
    <StrictMode>
      <VerifyEmailPage />
    </StrictMode>,
  );
}

test('only /verify-email/<token> is a verification link', () => {
  expect(verificationToken('/verify-email/abc-123')).toBe('abc-123');
  for (const path of ['/verify-email/', '/verify-email/a/b', '/verify-email', '/invitations/abc'])
    expect(verificationToken(path)).toBeNull();
});

test('the link is posted once on load, even in StrictMode, and confirms the signed-in user', async () => {
  const token = link(1);
  const calls = fakeApi({ 'POST /api/auth/verify-email': { body: { ...ada, email_verified: true } } });
  signInAsAda();
  expect(currentSession()?.emailVerified).toBe(false);
  const { container } = show(token);

  expect(screen.getByRole('status').textContent).toBe('Confirming your email address…');
  expect((await screen.findByRole('heading', { level: 1 })).textContent).toBe('Email address confirmed');
  expect(screen.getByRole('status').textContent).toBe(
    'ada@example.com is confirmed. You can now invite others to your team.',
  );
  expect(calls).toEqual([{ method: 'POST', path: '/api/auth/verify-email', body: { token } }]);
  expect(currentSession()?.emailVerified).toBe(true);
  expect(screen.getByRole('link', { name: 'Go to your account' }).getAttribute('href')).toBe('/account');
  expect(await accessibilityViolations(container)).toEqual([]);
});

test('signed in as someone else, their session is left as it is', async () => {
  fakeApi({
    'POST /api/auth/verify-email': { body: { ...ada, id: 'another-user', email: 'grace@example.com', email_verified: true } },
  });
  signInAsAda();
  show(link(2));
  await screen.findByText('grace@example.com is confirmed. You can now invite others to your team.');
  expect(currentSession()?.emailVerified).toBe(false);
});

test('a used, replaced or expired link says so, and how to get a new one', async () => {
  const calls = fakeApi({
    'POST /api/auth/verify-email': {
      status: 404,
      body: {
        error: {
          code: 'verification_not_found',
          message: 'this verification link is used, replaced by a newer one, expired or unknown',
        },
      },
    },
  });
  const { container } = show(link(3));

  expect((await screen.findByRole('alert')).textContent).toBe(
    'This link was used, replaced by a newer one, or has expired. Sign in and send a new one.',
  );
  expect(screen.getByRole('link', { name: 'Sign in to your account' }).getAttribute('href')).toBe('/login?next=%2Faccount');
  expect(calls).toHaveLength(1);
  expect(await accessibilityViolations(container)).toEqual([]);
});

test('another failure shows the API’s message and can be tried again', async () => {
  let down = true;
  const calls = fakeApi({
    'POST /api/auth/verify-email': () =>
      down
        ? {
            status: 503,
            headers: { 'retry-after': '1' },
            body: { error: { code: 'temporarily_unavailable', message: 'the service is busy: try again in a moment' } },
          }
        : { body: { ...ada, email_verified: true } },
  });
  const user = userEvent.setup();
  show(link(4));

  expect((await screen.findByRole('alert')).textContent).toBe('the service is busy: try again in a moment');
  down = false;
  await user.click(screen.getByRole('button', { name: 'Try again' }));
  await screen.findByText('ada@example.com is confirmed. You can now invite others to your team.');
  expect(screen.getByRole('link', { name: 'Sign in to your account' })).toBeTruthy();
  expect(calls).toHaveLength(2);
});
