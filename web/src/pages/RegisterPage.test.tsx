import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { expect, test } from 'vitest';
import type { Registered } from '../api/types';
import { currentSession } from '../session';
import { fakeApi, plans } from '../test/fakeApi';
import { RegisterPage } from './RegisterPage';

async function fillIn(user: ReturnType<typeof userEvent.setup>, password: string) {
  await user.type(screen.getByLabelText('Name'), 'Ada');
  await user.type(screen.getByLabelText('Email'), 'ada@example.com');
  await user.type(screen.getByLabelText('Password', { exact: false }), password);
}

test('the API’s message for a field is shown, and that field is marked invalid', async () => {
  fakeApi({
    'GET /api/plans': { body: plans },
    'POST /api/auth/register/with-plan': {
      status: 422,
      body: { error: { code: 'invalid_field', field: 'password', message: 'password must be at least 10 characters' } },
    },
  });
  const user = userEvent.setup();
  render(<RegisterPage />);
  await screen.findByRole('option', { name: 'Professional' });
  await fillIn(user, 'short');
  await user.click(screen.getByRole('button', { name: 'Create account' }));

  const alert = await screen.findByRole('alert');
  expect(alert.textContent).toBe('password must be at least 10 characters');
  const password = screen.getByLabelText('Password', { exact: false });
  expect(password.getAttribute('aria-invalid')).toBe('true');
  expect(password.getAttribute('aria-describedby')).toContain(alert.id);
  expect(screen.getByLabelText('Email').getAttribute('aria-invalid')).toBeNull();
});

// Typed against the schema, so the fixture cannot drift from the API.
const registered: Registered = {
  access_token: 'token-1',
  token_type: 'bearer',
  expires_in: 3600,
  account: { id: 'acct-1', name: 'Ada', role: 'owner', plan_id: 'free' },
  user: { id: 'u1', email: 'ada@example.com', name: 'Ada', email_verified: false, created_at: '2026-11-24T00:00:00Z' },
};

test('a Free registration signs in, with the email not confirmed yet, and opens the account page', async () => {
  const calls = fakeApi({
    'GET /api/plans': { body: plans },
    'POST /api/auth/register/with-plan': {
      status: 201,
      body: registered,
    },
  });
  const user = userEvent.setup();
  render(<RegisterPage />);
  await screen.findByRole('option', { name: 'Free' });
  await fillIn(user, 'correct horse 9');
  await user.click(screen.getByRole('button', { name: 'Create account' }));

  await screen.findByRole('button', { name: 'Create account' });
  expect(calls.at(-1)!.body).toEqual({
    name: 'Ada',
    email: 'ada@example.com',
    password: 'correct horse 9',
    plan_id: 'free',
    billing_interval: 'monthly',
  });
  expect(currentSession()?.token).toBe('token-1');
  expect(currentSession()?.emailVerified).toBe(false);
  expect(location.pathname).toBe('/account');
});
