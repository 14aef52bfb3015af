import { useState } from 'react';
import { api, ApiError, call } from '../api/client';
import { ErrorMessage } from '../components/ErrorMessage';
import { Link, linkToken, navigate, useLocation, withNext } from '../router';
import { switchAccount, useSession } from '../session';

export const INVITATION_PREFIX = '/invitations/';

/** The token of an invitation link, `/invitations/<token>`. */
export function invitationToken(path: string): string | null {
  return linkToken(INVITATION_PREFIX, path);
}

/**
 * Where an invitation email's link lands. Signed out: sign in or register,
 * then back here. Signed in: join the account that invited you, which then
 * becomes the account the pages act on.
 */
export function InvitationPage() {
  const { path } = useLocation();
  const session = useSession();
  const token = invitationToken(path);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  if (!token) return null;
  const gone = error instanceof ApiError && error.status === 404;

  async function accept(token: string) {
    setBusy(true);
    setError(null);
    try {
      const joined = await call(
        api.POST('/api/invitations/{token}/accept', { params: { path: { token } } }),
      );
      switchAccount(joined);
      navigate('/account?joined=1');
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  }

  if (!session) {
    return (
      <>
        <h1>Join a team on KRAFTD</h1>
        <p className="lead">
          You have been invited to share a KRAFTD account. Sign in, or create your own sign-in, to accept the
          invitation.
        </p>
        <div className="card actions">
          <Link className="button" href={withNext('/login', path)}>
            Sign in to accept
          </Link>
          <Link href={withNext('/register', path)}>Create an account</Link>
        </div>
      </>
    );
  }

  return (
    <>
      <h1>Join a team on KRAFTD</h1>
      <p className="lead">Signed in as {session.email}</p>
      <section className="card" aria-labelledby="invitation-heading">
        <h2 id="invitation-heading">Your invitation</h2>
        {gone ? (
          <>
            <p className="error" role="alert">
              This invitation is no longer valid
            </p>
            <p>
              It may have been withdrawn, used already, or have expired. Ask the person who invited you for a
              new one.
            </p>
            <p>
              <Link href="/account">Go to your account</Link>
            </p>
          </>
        ) : (
          <>
            <p>
              Joining shares the account’s plan, usage and invoices with you. You keep your own account, and can
              switch between them on the account page.
            </p>
            <ErrorMessage error={error} />
            <div className="actions">
              <button type="button" className="primary" disabled={busy} onClick={() => accept(token)}>
                Join the team
              </button>
            </div>
          </>
        )}
      </section>
    </>
  );
}
