import { useEffect, useState } from 'react';
import { api, ApiError, call } from '../api/client';
import type { VerifiedEmail } from '../api/types';
import { ErrorMessage } from '../components/ErrorMessage';
import { Link, linkToken, useLocation } from '../router';
import { updateUser, useSession } from '../session';

export const VERIFY_EMAIL_PREFIX = '/verify-email/';

/** The token of a verification link, `/verify-email/<token>`. */
export function verificationToken(path: string): string | null {
  return linkToken(VERIFY_EMAIL_PREFIX, path);
}

// A link works once, so it is posted once per page load: React's StrictMode
// mounts the page twice in development, and both share this one attempt.
const attempts = new Map<string, Promise<VerifiedEmail>>();

function verifyOnce(token: string): Promise<VerifiedEmail> {
  let attempt = attempts.get(token);
  if (!attempt) {
    attempt = call(api.POST('/api/auth/verify-email', { body: { token } }));
    // A signed-in session of the same user learns it at once.
    attempt.then(updateUser, () => {});
    attempts.set(token, attempt);
  }
  return attempt;
}

type State =
  | { status: 'pending' }
  | { status: 'done'; user: VerifiedEmail }
  | { status: 'failed'; error: unknown };

/**
 * Where a verification email's link lands: it confirms the address at once,
 * signed in or not (the link is the credential), and says what next.
 */
export function VerifyEmailPage() {
  const { path } = useLocation();
  const session = useSession();
  const token = verificationToken(path);
  const [state, setState] = useState<State>({ status: 'pending' });
  const [round, setRound] = useState(0);

  useEffect(() => {
    if (!token) return;
    let stale = false;
    setState({ status: 'pending' });
    verifyOnce(token).then(
      (user) => !stale && setState({ status: 'done', user }),
      (error: unknown) => !stale && setState({ status: 'failed', error }),
    );
    return () => {
      stale = true;
    };
  }, [token, round]);

  if (!token) return null;
  const onward = session ? (
    <Link href="/account">Go to your account</Link>
  ) : (
    <Link href={`/login?next=${encodeURIComponent('/account')}`}>Sign in to your account</Link>
  );

  if (state.status === 'done') {
    return (
      <>
        <h1>Email address confirmed</h1>
        <section className="card" aria-labelledby="verified-heading">
          <h2 id="verified-heading">Thank you</h2>
          <p className="notice" role="status">
            {state.user.email} is confirmed. You can now invite others to your team.
          </p>
          <p>{onward}</p>
        </section>
      </>
    );
  }

  const gone = state.status === 'failed' && state.error instanceof ApiError && state.error.status === 404;
  return (
    <>
      <h1>Confirm your email address</h1>
      <section className="card" aria-labelledby="verify-link-heading">
        <h2 id="verify-link-heading">Your confirmation link</h2>
        {state.status === 'pending' && <p role="status">Confirming your email address…</p>}
        {gone && (
          <>
            <p className="error" role="alert">
              This link was used, replaced by a newer one, or has expired. Sign in and send a new one.
            </p>
            {session?.emailVerified && <p>Your email address is confirmed already: there is nothing more to do.</p>}
            <p>{onward}</p>
          </>
        )}
        {state.status === 'failed' && !gone && (
          <>
            <ErrorMessage error={state.error} />
            <div className="actions">
              <button
                type="button"
                onClick={() => {
                  attempts.delete(token);
                  setRound((r) => r + 1);
                }}
              >
                Try again
              </button>
            </div>
          </>
        )}
      </section>
    </>
  );
}
