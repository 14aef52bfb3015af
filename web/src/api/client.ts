// The typed API client: paths, bodies and answers come from the OpenAPI
// document through schema.d.ts. Every error answer becomes an ApiError that
// carries the API's own message.
import createClient, { type Middleware } from 'openapi-fetch';
import type { paths } from './schema';
import { currentSession, forgetAccount, signOut } from '../session';

/** Same origin by default (`handler serve` serves the app and the API);
 * VITE_API_BASE at build time for an API on another origin. */
const BASE = import.meta.env.VITE_API_BASE ?? location.origin;

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** The request field the message is about, when there is one. */
  readonly field?: string;
  /** The plan that lifts the limit that was hit. */
  readonly upgradeTo?: string;
  /** The API's X-Upgrade-Url header. */
  readonly upgradeUrl?: string;

  constructor(status: number, body: unknown, headers?: Headers) {
    const e = (body as { error?: Record<string, unknown> } | undefined)?.error;
    const message =
      typeof e?.message === 'string' && e.message
        ? e.message
        : `The billing service answered ${status} without an explanation.`;
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = typeof e?.code === 'string' ? e.code : 'unknown';
    if (typeof e?.field === 'string') this.field = e.field;
    if (typeof e?.upgrade_to === 'string') this.upgradeTo = e.upgrade_to;
    const url = headers?.get('x-upgrade-url');
    if (url) this.upgradeUrl = url;
  }
}

/** The header that names the account a call acts on. */
export const ACCOUNT_HEADER = 'x-account-id';

const auth: Middleware = {
  onRequest({ request }) {
    const session = currentSession();
    if (session) request.headers.set('authorization', `Bearer ${session.token}`);
    if (session?.account) request.headers.set(ACCOUNT_HEADER, session.account.id);
    return request;
  },
  async onResponse({ request, response }) {
    // An expired or revoked token: forget it, the pages ask to sign in again.
    if (response.status === 401 && request.headers.has('authorization')) signOut();
    // No longer a member of the account the session names (removed, or it
    // left): forget it, so the next calls go to the user's own account.
    const account = request.headers.get(ACCOUNT_HEADER);
    if (response.status === 404 && account) {
      const body = (await response
        .clone()
        .json()
        .catch(() => null)) as { error?: { code?: unknown } } | null;
      if (body?.error?.code === 'account_not_found') forgetAccount(account);
    }
    return response;
  },
};

// fetch is looked up per request (not captured once), so tests can stand in for the network.
export const api = createClient<paths>({ baseUrl: BASE, fetch: (request) => globalThis.fetch(request) });
api.use(auth);

function unreachable(): ApiError {
  return new ApiError(0, {
    error: { code: 'unreachable', message: 'The billing service could not be reached. Try again in a moment.' },
  });
}

/** The answer's body, or an ApiError with the API's message. */
export async function call<T>(
  request: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  let result;
  try {
    result = await request;
  } catch {
    throw unreachable();
  }
  const { data, error, response } = result;
  if (!response.ok || data === undefined) throw new ApiError(response.status, error, response.headers);
  return data;
}

/** For answers without a body (204): resolves when the call succeeded, or
 * throws an ApiError with the API's message. */
export async function send(request: Promise<{ error?: unknown; response: Response }>): Promise<void> {
  let result;
  try {
    result = await request;
  } catch {
    throw unreachable();
  }
  if (!result.response.ok) throw new ApiError(result.response.status, result.error, result.response.headers);
}
