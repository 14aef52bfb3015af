// The signed-in session: the access token, who it belongs to, and the
// account (organization) the pages act on. Kept in sessionStorage, so it
// survives the round trip through Stripe's checkout in the same tab and ends
// with the tab.
import { useSyncExternalStore } from 'react';
import type { AccountSummary, UserProfile } from './api/types';

/** An account the signed-in user belongs to, and their role in it. */
export type SessionAccount = Pick<AccountSummary, 'id' | 'name' | 'role' | 'plan_id'>;

export interface Session {
  token: string;
  email: string;
  name: string;
  /** The user's id, when the sign-in answer said it. */
  userId?: string;
  /** Whether the user confirmed their email address (the emailed link);
   * absent when not known yet. Inviting others needs it. */
  emailVerified?: boolean;
  /** Milliseconds since the epoch (UTC) when the token stops being accepted. */
  expiresAt: number;
  /** The account every call acts on (sent as `X-Account-Id`); absent: the
   * service's default, the account the user owns. */
  account?: SessionAccount;
  /** The account the session named until the service said the user is no
   * longer one of its members; kept to say so. */
  lostAccount?: SessionAccount;
}

const KEY = 'kraftd.session';
const listeners = new Set<() => void>();
let cached: { raw: string | null; session: Session | null } = { raw: null, session: null };

function read(): Session | null {
  const raw = sessionStorage.getItem(KEY);
  if (raw !== cached.raw) {
    let session: Session | null = null;
    try {
      session = raw ? (JSON.parse(raw) as Session) : null;
    } catch {
      session = null;
    }
    cached = { raw, session };
  }
  const s = cached.session;
  return s && s.expiresAt > Date.now() ? s : null;
}

function write(session: Session): void {
  sessionStorage.setItem(KEY, JSON.stringify(session));
  listeners.forEach((l) => l());
}

export function currentSession(): Session | null {
  return read();
}

export function signIn(answer: {
  access_token: string;
  expires_in: number;
  user: { id?: string; email: string; name: string; email_verified?: boolean };
  /** The account calls act on by default; `null` when the user has none. */
  account?: SessionAccount | null;
}): void {
  const session: Session = {
    token: answer.access_token,
    email: answer.user.email,
    name: answer.user.name,
    expiresAt: Date.now() + answer.expires_in * 1000,
  };
  if (answer.user.id) session.userId = answer.user.id;
  if (answer.user.email_verified !== undefined) session.emailVerified = answer.user.email_verified;
  if (answer.account) session.account = pickAccount(answer.account);
  write(session);
}

function pickAccount(a: SessionAccount): SessionAccount {
  return { id: a.id, name: a.name, role: a.role, plan_id: a.plan_id };
}

/** Acts on another of the user's accounts from now on (or the same one with
 * a fresher name, role or plan). */
export function switchAccount(account: SessionAccount): void {
  const s = read();
  if (!s) return;
  const next = pickAccount(account);
  const now = s.account;
  if (now && now.id === next.id && now.name === next.name && now.role === next.role && now.plan_id === next.plan_id)
    return;
  const rest: Session = { ...s, account: next };
  delete rest.lostAccount;
  write(rest);
}

/** Forgets the chosen account (the user is no longer one of its members):
 * calls go to the service's default again. Only if it is still `id`. */
export function forgetAccount(id: string): void {
  const s = read();
  if (!s?.account || s.account.id !== id) return;
  const rest: Session = { ...s, lostAccount: s.account };
  delete rest.account;
  write(rest);
}

/** The signed-in user as the service describes them now (`GET /api/me`, a
 * confirmed or resent link). Ignored when it is someone else: a link opened
 * in another user's session. */
export function updateUser(user: UserProfile): void {
  const s = read();
  if (!s) return;
  const same = s.userId ? s.userId === user.id : s.email.toLowerCase() === user.email.toLowerCase();
  if (!same) return;
  if (s.userId === user.id && s.email === user.email && s.name === user.name && s.emailVerified === user.email_verified)
    return;
  write({ ...s, userId: user.id, email: user.email, name: user.name, emailVerified: user.email_verified });
}

/** The service refused something because the email is not confirmed
 * (`email_verified`): say so from now on. */
export function markEmailUnverified(): void {
  const s = read();
  if (s && s.emailVerified !== false) write({ ...s, emailVerified: false });
}

export function signOut(): void {
  sessionStorage.removeItem(KEY);
  listeners.forEach((l) => l());
}

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function useSession(): Session | null {
  return useSyncExternalStore(subscribe, read);
}
