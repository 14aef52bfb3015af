import { useEffect, useRef, useState } from 'react';
import { chooseAccount, mayManage, ROLE_TEXT } from '../accounts';
import { api, ApiError, call } from '../api/client';
import type { AccountSummary, Invoice, Plan, Subscription } from '../api/types';
import { EmailNotice } from '../components/EmailNotice';
import { ErrorMessage } from '../components/ErrorMessage';
import { InvoiceTable } from '../components/InvoiceTable';
import { PlanChange } from '../components/PlanChange';
import { QuotaPrompt } from '../components/QuotaPrompt';
import { Team } from '../components/Team';
import { metricName, taken, UsageBar } from '../components/UsageBar';
import { formatCount, formatDate, formatMoney } from '../format';
import { useFreshProfile } from '../profile';
import { navigate, useLocation } from '../router';
import { currentSession, forgetAccount, switchAccount, useSession, type SessionAccount } from '../session';
import {
  changeTargets,
  isLiveSubscription,
  nextTier,
  planName,
  STATUS_TEXT,
  type PlanTarget,
} from '../subscription';
import { useLoad } from '../useLoad';

// Seats (team_members) are shown with the team, in the Team section.
const METRIC_ORDER = ['documents', 'api_calls', 'exports', 'storage_mb'] as const;

/** The subscription manager: plan, renewal, changes, usage, team and invoices. */
export function AccountPage() {
  const session = useSession();
  const { search } = useLocation();
  useEffect(() => {
    if (!session) navigate(`/login?next=${encodeURIComponent('/account')}&expired=1`, { replace: true });
  }, [session]);
  if (!session) return null;
  return (
    <ChosenAccount
      key={session.token}
      initialChange={targetFrom(search)}
      paid={search.get('payment') === 'success'}
      joined={search.get('joined') === '1'}
    />
  );
}

function targetFrom(search: URLSearchParams): PlanTarget | null {
  const planId = search.get('change');
  if (planId !== 'pro' && planId !== 'enterprise') return null;
  return { planId, interval: search.get('interval') === 'annual' ? 'annual' : 'monthly' };
}

async function listAccounts(): Promise<AccountSummary[]> {
  try {
    return (await call(api.GET('/api/accounts'))).accounts;
  } catch (e) {
    // The session named an account the user has left or was removed from:
    // the client forgot it on this answer; ask again without it.
    if (e instanceof ApiError && e.code === 'account_not_found')
      return (await call(api.GET('/api/accounts'))).accounts;
    throw e;
  }
}

/**
 * Which account the page shows: the session's while the user still belongs
 * to it, else their own. Asked of the service on every visit, so a role
 * changed or a membership ended since sign-in shows at once.
 */
function ChosenAccount({
  initialChange,
  paid,
  joined,
}: {
  initialChange: PlanTarget | null;
  paid: boolean;
  joined: boolean;
}) {
  const session = useSession();
  const account = session?.account;
  const [accounts, setAccounts] = useState<AccountSummary[] | null>(null);
  const [lost, setLost] = useState<SessionAccount | null>(null);
  const [error, setError] = useState<unknown>(null);
  const unchosen = !account;
  // The email may have been confirmed since sign-in (the link opened in
  // another tab): the notice and the Team section go by the fresh answer.
  useFreshProfile();

  // Again whenever the session loses its account (a call answered that the
  // user is no longer a member).
  useEffect(() => {
    let stale = false;
    const before = currentSession();
    const wanted = before?.account ?? before?.lostAccount;
    setError(null);
    listAccounts()
      .then((list) => {
        if (stale) return;
        setAccounts(list);
        if (wanted && !list.some((a) => a.id === wanted.id)) setLost(wanted);
        const chosen = chooseAccount(list, wanted?.id);
        if (chosen) switchAccount(chosen);
      })
      .catch((e) => !stale && setError(e));
    return () => {
      stale = true;
    };
  }, [unchosen]);

  const ready = accounts && account && accounts.some((a) => a.id === account.id);
  return (
    <>
      <h1>Your subscription</h1>
      <p className="lead">Signed in as {session?.email}</p>
      <EmailNotice />
      {lost && (
        <p className="warning-text" role="status">
          You are no longer a member of {lost.name}. Showing {account?.name ?? 'your own account'} instead.
        </p>
      )}
      <ErrorMessage error={error} />
      {accounts && accounts.length === 0 && <p>You are not a member of any account.</p>}
      {ready ? (
        <>
          <AccountPicker accounts={accounts} current={account} />
          <Account
            key={account.id}
            account={account}
            initialChange={initialChange}
            paid={paid}
            joined={joined}
          />
        </>
      ) : (
        !error && accounts?.length !== 0 && <p role="status">Loading your account…</p>
      )}
    </>
  );
}

/** The account the page is about, the caller's role in it, and a way to
 * switch when they belong to more than one. */
function AccountPicker({ accounts, current }: { accounts: AccountSummary[]; current: SessionAccount }) {
  return (
    <div className="account-picker">
      {accounts.length > 1 ? (
        <div className="field inline-field">
          <label htmlFor="field-account">Account</label>
          <select
            id="field-account"
            value={current.id}
            onChange={(e) => {
              const next = accounts.find((a) => a.id === e.target.value);
              if (next) {
                switchAccount(next);
                navigate('/account', { replace: true });
              }
            }}
          >
            {accounts.map((a) => (
              <option key={a.id} value={a.id}>
                {a.name} ({ROLE_TEXT[a.role]})
              </option>
            ))}
          </select>
        </div>
      ) : (
        <p>
          Account: <strong data-testid="account-name">{current.name}</strong>
        </p>
      )}
      <p>
        Your role: <strong data-testid="account-role">{ROLE_TEXT[current.role]}</strong>
        {!mayManage(current.role) && ' · Only owners and admins can change the plan and billing.'}
      </p>
    </div>
  );
}

function Account({
  account,
  initialChange,
  paid,
  joined,
}: {
  account: SessionAccount;
  initialChange: PlanTarget | null;
  paid: boolean;
  joined: boolean;
}) {
  const manage = mayManage(account.role);
  const plans = useLoad(() => call(api.GET('/api/plans')).then((r) => r.plans), []);
  const sub = useLoad(() => call(api.GET('/api/billing/subscription')), []);
  const [change, setChange] = useState<PlanTarget | null>(manage ? initialChange : null);
  const [notice, setNotice] = useState<string | null>(
    joined ? `You joined ${account.name} as ${ROLE_TEXT[account.role].toLowerCase()}.` : null,
  );
  const [usageRound, setUsageRound] = useState(0);
  const [invoices, setInvoices] = useState<InvoiceRefresh>({ round: 0, expectNew: false });
  const [waitingForPayment, setWaitingForPayment] = useState(paid);

  useEffect(() => {
    if (joined) navigate('/account', { replace: true });
  }, [joined]);

  // Back from checkout: Stripe's webhook activates the plan, usually before
  // the redirect lands; poll briefly in case it is still on its way.
  useEffect(() => {
    if (!waitingForPayment || !sub.data) return;
    if (isLiveSubscription(sub.data)) {
      setWaitingForPayment(false);
      setNotice(`Payment received. You are on ${sub.data.plan.name}.`);
      setInvoices((r) => ({ round: r.round + 1, expectNew: false }));
      setUsageRound((r) => r + 1);
      navigate('/account', { replace: true });
      return;
    }
    const timer = setTimeout(sub.reload, 1000);
    return () => clearTimeout(timer);
  }, [waitingForPayment, sub.data, sub.reload]);

  function changed(next: Subscription, message: string, charged: boolean) {
    sub.set(next);
    setChange(null);
    setNotice(message);
    setInvoices((r) => ({ round: r.round + 1, expectNew: charged }));
    setUsageRound((r) => r + 1);
    navigate('/account', { replace: true });
  }

  return (
    <>
      {waitingForPayment && <p role="status">Confirming your payment…</p>}
      {notice && (
        <p className="notice" role="status">
          {notice}
        </p>
      )}
      <ErrorMessage error={sub.error ?? plans.error} />
      {sub.data && plans.data && (
        <>
          <CurrentPlan
            sub={sub.data}
            plans={plans.data}
            manage={manage}
            onUpdated={(s, message) => {
              sub.set(s);
              setNotice(message);
            }}
          />
          {manage &&
            (change ? (
              <PlanChange
                subscription={sub.data}
                plans={plans.data}
                target={change}
                onChanged={changed}
                onClose={() => {
                  setChange(null);
                  navigate('/account', { replace: true });
                }}
              />
            ) : (
              <ChangeOptions sub={sub.data} plans={plans.data} onChoose={setChange} />
            ))}
          <Usage key={`usage-${usageRound}`} plans={plans.data} onUpgrade={manage ? setChange : undefined} />
          <Team
            role={account.role}
            plans={plans.data}
            onUpgrade={manage ? setChange : undefined}
            onLeft={() => forgetAccount(account.id)}
          />
          <Invoices refresh={invoices} />
        </>
      )}
      {!sub.data && !sub.error && <p role="status">Loading your subscription…</p>}
    </>
  );
}

function CurrentPlan({
  sub,
  plans,
  manage,
  onUpdated,
}: {
  sub: Subscription;
  plans: Plan[];
  /** The caller may cancel, resume and open the customer portal. */
  manage: boolean;
  onUpdated: (sub: Subscription, message: string) => void;
}) {
  const [confirmCancel, setConfirmCancel] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const live = isLiveSubscription(sub);
  const price = sub.plan.price;
  const periodEnd = sub.current_period_end ?? sub.renewal_date;

  async function act(run: () => Promise<{ subscription: Subscription }>, message: (s: Subscription) => string) {
    setBusy(true);
    setError(null);
    try {
      const { subscription } = await run();
      setConfirmCancel(false);
      onUpdated(subscription, message(subscription));
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  async function portal() {
    setBusy(true);
    setError(null);
    try {
      const { url } = await call(api.GET('/api/billing/customer-portal'));
      window.location.assign(url);
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  }

  return (
    <section className="card current" aria-labelledby="current-heading">
      <h2 id="current-heading">Current plan</h2>
      <dl className="facts">
        <dt>Plan</dt>
        <dd data-testid="current-plan">{sub.plan.name}</dd>
        <dt>Status</dt>
        <dd>
          <span className={`status status-${sub.status}`}>{STATUS_TEXT[sub.status]}</span>
        </dd>
        {price && price.amount > 0 && (
          <>
            <dt>Price</dt>
            <dd>
              {formatMoney(price.amount, price.currency)} per{' '}
              {price.interval === 'annual' ? 'year' : 'month'}
            </dd>
          </>
        )}
        {live && periodEnd && (
          <>
            <dt>{sub.cancel_at_period_end ? 'Ends on' : 'Renews on'}</dt>
            <dd data-testid="period-end">{formatDate(periodEnd)}</dd>
          </>
        )}
        {sub.grace_until && (
          <>
            <dt>Paid features kept until</dt>
            <dd>{formatDate(sub.grace_until)}</dd>
          </>
        )}
        {sub.scheduled_change && (
          <>
            <dt>Scheduled change</dt>
            <dd>
              {planName(plans, sub.scheduled_change.plan_id)}, billed{' '}
              {sub.scheduled_change.billing_interval === 'annual' ? 'annually' : 'monthly'}
              {sub.scheduled_change.effective_at && ` from ${formatDate(sub.scheduled_change.effective_at)}`}
            </dd>
          </>
        )}
      </dl>
      {live && sub.cancel_at_period_end && periodEnd && (
        <p className="warning-text">
          Your subscription is canceled and ends on {formatDate(periodEnd)}. You keep {sub.plan.name} until
          then.
        </p>
      )}
      {sub.status === 'incomplete' && (
        <p className="warning-text">
          The payment for {sub.plan.name} has not been completed. Until it is, the Free plan’s limits
          apply.
        </p>
      )}
      {sub.status === 'past_due' && (
        <p className="warning-text">
          Your last payment failed. Update your payment details to keep {sub.plan.name}.
        </p>
      )}
      <ErrorMessage error={error} />
      {manage && (
        <div className="actions">
          {live && sub.cancel_at_period_end && (
            <button
              type="button"
              className="primary"
              disabled={busy}
              onClick={() =>
                act(
                  () => call(api.POST('/api/billing/resume')),
                  (s) => `Your subscription continues. It renews on ${formatDate(s.current_period_end ?? s.renewal_date ?? '')}.`,
                )
              }
            >
              Resume subscription
            </button>
          )}
          {live && !sub.cancel_at_period_end && !confirmCancel && (
            <button type="button" disabled={busy} onClick={() => setConfirmCancel(true)}>
              Cancel subscription
            </button>
          )}
          {sub.plan.id !== 'free' && (
            <button type="button" disabled={busy} onClick={portal}>
              Manage payment details
            </button>
          )}
        </div>
      )}
      {manage && confirmCancel && (
        <div className="confirm" role="group" aria-labelledby="cancel-question">
          <p id="cancel-question">
            Cancel at the end of the billing period
            {periodEnd ? `, on ${formatDate(periodEnd)}` : ''}? You keep {sub.plan.name} until then and are not
            charged again.
          </p>
          <div className="actions">
            <button
              type="button"
              className="danger"
              disabled={busy}
              onClick={() =>
                act(
                  () => call(api.POST('/api/billing/cancel-subscription')),
                  (s) => `Your subscription will end on ${formatDate(s.current_period_end ?? s.renewal_date ?? '')}.`,
                )
              }
            >
              Yes, cancel at period end
            </button>
            <button type="button" disabled={busy} onClick={() => setConfirmCancel(false)}>
              Keep my subscription
            </button>
          </div>
        </div>
      )}
    </section>
  );
}

function ChangeOptions({
  sub,
  plans,
  onChoose,
}: {
  sub: Subscription;
  plans: Plan[];
  onChoose: (t: PlanTarget) => void;
}) {
  const targets = changeTargets(sub, plans);
  if (targets.length === 0) return null;
  const live = isLiveSubscription(sub);
  return (
    <section className="card" aria-labelledby="change-heading">
      <h2 id="change-heading">{live ? 'Change plan' : 'Upgrade'}</h2>
      <div className="actions">
        {targets.map((t) => {
          const price = plans.find((p) => p.id === t.planId)?.prices.find((p) => p.interval === t.interval);
          return (
            <button key={`${t.planId}-${t.interval}`} type="button" onClick={() => onChoose(t)}>
              {live && t.planId === sub.plan.id
                ? `Switch to ${t.interval} billing`
                : `Upgrade to ${planName(plans, t.planId)} (${t.interval})`}
              {price && ` · ${formatMoney(price.amount, price.currency)}/${t.interval === 'annual' ? 'yr' : 'mo'}`}
            </button>
          );
        })}
      </div>
    </section>
  );
}

/** Usage against the plan's limits (KRAFTD's services report it), and the
 * upgrade prompt when a limit is reached. */
function Usage({ plans, onUpgrade }: { plans: Plan[]; onUpgrade?: (t: PlanTarget) => void }) {
  const usage = useLoad(() => call(api.GET('/api/usage')), []);
  const readings = METRIC_ORDER.flatMap((m) => usage.data?.usage[m] ?? []);
  const reached = readings.filter((r) => r.limit !== null && taken(r) >= r.limit);
  const plan = usage.data?.plan;
  const name = plan ? planName(plans, plan) : '';
  const message = reached
    .map((r) => {
      const resets = r.resets_at ? ` until ${formatDate(r.resets_at)}` : '';
      return `${metricName(r.metric)}: the ${name} plan's limit of ${formatCount(r.limit ?? 0)} is reached, and KRAFTD refuses more${resets}.`;
    })
    .join(' ');

  return (
    <section className="card" aria-labelledby="usage-heading">
      <h2 id="usage-heading">Usage</h2>
      <ErrorMessage error={usage.error} />
      {plan && reached.length > 0 && (
        <QuotaPrompt message={message} upgradeTo={nextTier(plan)} plans={plans} onUpgrade={onUpgrade} />
      )}
      {readings.map((r) => (
        <UsageBar key={r.metric} reading={r} />
      ))}
    </section>
  );
}

interface InvoiceRefresh {
  round: number;
  /** A change just billed: its invoice arrives with Stripe's webhook, so
   * look again for a short while until it is listed. */
  expectNew: boolean;
}

function Invoices({ refresh }: { refresh: InvoiceRefresh }) {
  const [invoices, setInvoices] = useState<Invoice[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const newest = useRef<string | null>(null);

  useEffect(() => {
    let stale = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const before = newest.current;
    let tries = 0;
    async function load() {
      try {
        const page = await call(api.GET('/api/billing/invoices', { params: { query: { limit: 10 } } }));
        if (stale) return;
        setInvoices(page.invoices);
        setNext(page.next_starting_after);
        setError(null);
        newest.current = page.invoices[0]?.id ?? null;
        if (refresh.expectNew && newest.current === before && ++tries < 10) timer = setTimeout(load, 1000);
      } catch (e) {
        if (!stale) setError(e);
      }
    }
    load();
    return () => {
      stale = true;
      clearTimeout(timer);
    };
  }, [refresh]);

  async function more() {
    if (!next) return;
    try {
      const page = await call(
        api.GET('/api/billing/invoices', { params: { query: { limit: 10, starting_after: next } } }),
      );
      setInvoices((list) => [...(list ?? []), ...page.invoices]);
      setNext(page.next_starting_after);
    } catch (e) {
      setError(e);
    }
  }

  return (
    <section className="card" aria-labelledby="invoices-heading">
      <h2 id="invoices-heading">Billing history</h2>
      <ErrorMessage error={error} />
      {invoices && <InvoiceTable invoices={invoices} />}
      {next && (
        <button type="button" onClick={more}>
          Show older invoices
        </button>
      )}
    </section>
  );
}
