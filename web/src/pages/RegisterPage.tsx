import { useState, type FormEvent } from 'react';
import { api, call } from '../api/client';
import type { BillingInterval, SelfServePlan } from '../api/types';
import { ErrorMessage } from '../components/ErrorMessage';
import { Field, FORM_ERROR_ID } from '../components/Field';
import { formatMoney } from '../format';
import { Link, navigate, safeNext, useLocation, withNext } from '../router';
import { signIn } from '../session';
import { useLoad } from '../useLoad';

// Enterprise is sold by sales: a link naming it starts on Free.
function asPlanId(raw: string | null): SelfServePlan {
  return raw === 'pro' ? raw : 'free';
}

export function RegisterPage() {
  const { search } = useLocation();
  const plans = useLoad(() => call(api.GET('/api/plans')).then((r) => r.plans), []);
  const [planId, setPlanId] = useState<SelfServePlan>(asPlanId(search.get('plan')));
  const [interval, setInterval] = useState<BillingInterval>(
    search.get('interval') === 'annual' ? 'annual' : 'monthly',
  );
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const selfServe = (plans.data ?? []).filter((p) => !p.contact_sales);
  const plan = selfServe.find((p) => p.id === planId);
  const intervals = plan?.prices.map((p) => p.interval) ?? ['monthly'];
  const chosenInterval: BillingInterval = intervals.includes(interval) ? interval : 'monthly';
  const price = plan?.prices.find((p) => p.interval === chosenInterval);

  async function submit(e: FormEvent<HTMLFormElement>) {
    e.preventDefault();
    const form = new FormData(e.currentTarget);
    const email = String(form.get('email') ?? '');
    const password = String(form.get('password') ?? '');
    setBusy(true);
    setError(null);
    try {
      const answer = await call(
        api.POST('/api/auth/register/with-plan', {
          body: {
            name: String(form.get('name') ?? ''),
            email,
            password,
            plan_id: planId,
            billing_interval: chosenInterval,
          },
        }),
      );
      if ('access_token' in answer) {
        signIn(answer);
        navigate(safeNext(search.get('next')));
        return;
      }
      // A paid plan: the account waits for payment. Sign in now so the
      // account page greets the user on the way back from checkout.
      signIn(await call(api.POST('/api/auth/login', { body: { email, password } })));
      window.location.assign(answer.checkout_url);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  }

  return (
    <>
      <h1>Create your account</h1>
      <ErrorMessage error={plans.error} />
      <form className="card form" onSubmit={submit} noValidate>
        <Field label="Name" name="name" autoComplete="name" required error={error} />
        <Field label="Email" name="email" type="email" autoComplete="email" required error={error} />
        <Field
          label="Password"
          name="password"
          type="password"
          autoComplete="new-password"
          required
          hint="At least 10 characters, mixing letters with digits or symbols."
          error={error}
        />
        <div className="field">
          <label htmlFor="field-plan">Plan</label>
          <select id="field-plan" value={planId} onChange={(e) => setPlanId(asPlanId(e.target.value))}>
            {selfServe.map((p) => (
              <option key={p.id} value={p.id}>
                {p.name}
              </option>
            ))}
          </select>
        </div>
        {intervals.length > 1 && (
          <fieldset className="field">
            <legend>Billing period</legend>
            {intervals.map((i) => (
              <label key={i} className="inline">
                <input
                  type="radio"
                  name="interval"
                  value={i}
                  checked={chosenInterval === i}
                  onChange={() => setInterval(i)}
                />{' '}
                {i === 'annual' ? 'Annual' : 'Monthly'}
              </label>
            ))}
          </fieldset>
        )}
        {price && price.amount > 0 && (
          <p>
            {formatMoney(price.amount, price.currency)} per{' '}
            {chosenInterval === 'annual' ? 'year' : 'month'}, paid at checkout next.
          </p>
        )}
        <ErrorMessage error={error} id={FORM_ERROR_ID} />
        <button type="submit" className="primary" disabled={busy || !plans.data}>
          {price && price.amount > 0 ? 'Create account and pay' : 'Create account'}
        </button>
        <p>
          Already have an account? <Link href={withNext('/login', search.get('next'))}>Sign in</Link>
        </p>
      </form>
    </>
  );
}
