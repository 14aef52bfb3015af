import { useState } from 'react';
import { api, call } from '../api/client';
import { updateUser, useSession } from '../session';
import { ErrorMessage } from './ErrorMessage';

/**
 * Shown while the signed-in user's email address is not confirmed: where
 * the link went, and a way to have a new one sent (the old one then stops
 * working).
 */
export function EmailNotice() {
  const session = useSession();
  const [sent, setSent] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  if (!session || (session.emailVerified !== false && !sent)) return null;
  const verified = session.emailVerified !== false;

  async function resend() {
    setBusy(true);
    setError(null);
    setSent(null);
    try {
      const me = await call(api.POST('/api/auth/verify-email/resend'));
      setSent(
        me.email_verified
          ? 'Your email address is confirmed already.'
          : `A new link is on its way to ${me.email}. Links sent before it no longer work.`,
      );
      updateUser(me);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="card attention" aria-labelledby="verify-heading">
      <h2 id="verify-heading">{verified ? 'Email address confirmed' : 'Confirm your email address'}</h2>
      {!verified && (
        <p>
          We sent a link to <strong>{session.email}</strong>. Open it to confirm the address is yours: until you
          do, you cannot invite others to your team.
        </p>
      )}
      {sent && (
        <p className="notice" role="status">
          {sent}
        </p>
      )}
      <ErrorMessage error={error} />
      {!verified && (
        <div className="actions">
          <button type="button" disabled={busy} onClick={resend}>
            Send a new link
          </button>
        </div>
      )}
    </section>
  );
}
