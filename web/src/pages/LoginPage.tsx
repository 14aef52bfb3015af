import { useState, type FormEvent } from 'react';
import { api, call } from '../api/client';
import { ErrorMessage } from '../components/ErrorMessage';
import { Field, FORM_ERROR_ID } from '../components/Field';
import { Link, navigate, safeNext, useLocation, withNext } from '../router';
import { signIn } from '../session';

export function LoginPage() {
  const { search } = useLocation();
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent<HTMLFormElement>) {
    e.preventDefault();
    const form = new FormData(e.currentTarget);
    setBusy(true);
    setError(null);
    try {
      signIn(
        await call(
          api.POST('/api/auth/login', {
            body: { email: String(form.get('email') ?? ''), password: String(form.get('password') ?? '') },
          }),
        ),
      );
      navigate(safeNext(search.get('next')));
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  }

  return (
    <>
      <h1>Sign in</h1>
      {search.get('expired') && <p role="status">Your session ended. Sign in again to continue.</p>}
      <form className="card form" onSubmit={submit} noValidate>
        <Field label="Email" name="email" type="email" autoComplete="email" required error={error} />
        <Field
          label="Password"
          name="password"
          type="password"
          autoComplete="current-password"
          required
          error={error}
        />
        <ErrorMessage error={error} id={FORM_ERROR_ID} />
        <button type="submit" className="primary" disabled={busy}>
          Sign in
        </button>
        <p>
          New to KRAFTD? <Link href={withNext('/register', search.get('next'))}>Create an account</Link>
        </p>
      </form>
    </>
  );
}
