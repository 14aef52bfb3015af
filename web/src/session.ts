// The signed-in session: the access token and who it belongs to. Kept in
// sessionStorage, so it survives the round trip through Stripe's checkout in
// the same tab and ends with the tab.
import { useSyncExternalStore } from 'react';

export interface Session {
  token: string;
  email: string;
  name: string;
  /** Milliseconds since the epoch (UTC) when the token stops being accepted. */
  expiresAt: number;
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

export function currentSession(): Session | null {
  return read();
}

export function signIn(answer: {
  access_token: string;
  expires_in: number;
  user: { email: string; name: string };
}): void {
  const session: Session = {
    token: answer.access_token,
    email: answer.user.email,
    name: answer.user.name,
    expiresAt: Date.now() + answer.expires_in * 1000,
  };
  sessionStorage.setItem(KEY, JSON.stringify(session));
  listeners.forEach((l) => l());
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
