import { expect, test, vi } from 'vitest';
import { api, ApiError, call } from './client';
import { currentSession, signIn, switchAccount } from '../session';
import { fakeApi } from '../test/fakeApi';

// Every seat taken: the refusal carries the same fields as any quota refusal.
const quota = {
  error: {
    code: 'quota_exceeded',
    message: 'the team_members limit of the free plan is reached',
    upgrade_to: 'pro',
    limit: 'team_members',
  },
};

test('an error answer becomes an ApiError with the API’s message, upgrade and link', async () => {
  fakeApi({
    'POST /api/account/invitations': {
      status: 403,
      body: quota,
      headers: { 'x-upgrade-url': 'https://kraftd.io/pricing?plan=pro' },
    },
  });
  const error = await call(
    api.POST('/api/account/invitations', { body: { email: 'grace@example.com', role: 'member' } }),
  ).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ApiError);
  expect(error).toMatchObject({
    status: 403,
    code: 'quota_exceeded',
    message: 'the team_members limit of the free plan is reached',
    upgradeTo: 'pro',
    upgradeUrl: 'https://kraftd.io/pricing?plan=pro',
  });
});

test('signed-in calls carry the token; a 401 ends the session', async () => {
  let seen: string | null = null;
  fakeApi({
    'GET /api/usage': { status: 401, body: { error: { code: 'invalid_token', message: 'the token has expired' } } },
  });
  const fetch = globalThis.fetch;
  vi.stubGlobal('fetch', async (r: Request) => {
    seen = r.headers.get('authorization');
    return fetch(r);
  });
  signIn({ access_token: 'abc', expires_in: 3600, user: { email: 'a@example.com', name: 'A' } });
  await expect(call(api.GET('/api/usage'))).rejects.toThrow('the token has expired');
  expect(seen).toBe('Bearer abc');
  expect(currentSession()).toBeNull();
});

test('an unreachable service is said plainly', async () => {
  vi.stubGlobal('fetch', () => Promise.reject(new TypeError('Failed to fetch')));
  await expect(call(api.GET('/api/plans'))).rejects.toThrow('The billing service could not be reached.');
});

const account = { id: 'acct-7', name: 'Analytical Engines', role: 'member', plan_id: 'pro' } as const;

test('signed-in calls name the session’s account in X-Account-Id', async () => {
  const seen: (string | null)[] = [];
  fakeApi({ 'GET /api/usage': { body: { plan: 'pro', usage: {} } } });
  const fetch = globalThis.fetch;
  vi.stubGlobal('fetch', async (r: Request) => {
    seen.push(r.headers.get('x-account-id'));
    return fetch(r);
  });
  signIn({ access_token: 'abc', expires_in: 3600, user: { email: 'a@example.com', name: 'A' } });
  await call(api.GET('/api/usage'));
  switchAccount(account);
  await call(api.GET('/api/usage'));
  expect(seen).toEqual([null, 'acct-7']);
});

test('an account the user no longer belongs to is forgotten, and kept to say so', async () => {
  fakeApi({
    'GET /api/usage': {
      status: 404,
      body: { error: { code: 'account_not_found', message: 'no such account' } },
    },
  });
  signIn({ access_token: 'abc', expires_in: 3600, user: { email: 'a@example.com', name: 'A' }, account });
  await expect(call(api.GET('/api/usage'))).rejects.toThrow('no such account');
  expect(currentSession()?.account).toBeUndefined();
  expect(currentSession()?.lostAccount).toEqual(account);
  expect(currentSession()?.token).toBe('abc');
});
