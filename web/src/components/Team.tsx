import { useState, type FormEvent } from 'react';
import { api, ApiError, call, send } from '../api/client';
import type { Member, MeterReading, PendingInvitation, Plan, Role, Seats } from '../api/types';
import { mayManage, ROLE_TEXT } from '../accounts';
import { formatDate } from '../format';
import { markEmailUnverified, useSession } from '../session';
import type { PlanTarget } from '../subscription';
import { useLoad } from '../useLoad';
import { ErrorMessage } from './ErrorMessage';
import { Field, FORM_ERROR_ID } from './Field';
import { QuotaPrompt } from './QuotaPrompt';
import { UsageBar } from './UsageBar';

/** The roles an invitation or a role change can give: there is one owner,
 * and ownership only moves by transfer. */
const ASSIGNABLE = ['member', 'admin'] as const;
type Assignable = (typeof ASSIGNABLE)[number];

function asAssignable(raw: unknown): Assignable {
  return raw === 'admin' ? 'admin' : 'member';
}

/** Seats as a usage reading: members plus pending invitations against the
 * plan's `team_members` limit. */
export function seatsReading(seats: Seats): MeterReading {
  return {
    metric: 'team_members',
    limit_name: 'team_members',
    used: seats.used,
    held: 0,
    limit: seats.limit,
    remaining: seats.limit === null ? null : Math.max(0, seats.limit - seats.used),
    window: null,
    resets_at: null,
  };
}

/**
 * The account's team: members with their roles, pending invitations and the
 * seats they take. Owners and admins invite, withdraw, remove and change
 * roles; members see the list, and may leave.
 */
export function Team({
  role,
  plans,
  onUpgrade,
  onLeft,
}: {
  /** The caller's role in the account. */
  role: Role;
  plans: Plan[];
  /** Opens a plan change; absent when the caller may not change the plan. */
  onUpgrade?: (t: PlanTarget) => void;
  /** The caller left the account. */
  onLeft?: () => void;
}) {
  const session = useSession();
  const team = useLoad(() => call(api.GET('/api/account/members')), []);
  const [notice, setNotice] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [confirm, setConfirm] = useState<Member | null>(null);
  const manage = mayManage(role);

  const isMe = (m: Member) =>
    session?.userId ? m.user_id === session.userId : m.email.toLowerCase() === session?.email.toLowerCase();

  async function act(run: () => Promise<unknown>, message: string, after?: () => void) {
    setBusy(true);
    setError(null);
    setNotice(null);
    try {
      await run();
      setConfirm(null);
      setNotice(message);
      if (after) after();
      else team.reload();
    } catch (e) {
      setError(e);
      team.reload();
    } finally {
      setBusy(false);
    }
  }

  function remove(m: Member) {
    const me = isMe(m);
    act(
      () => send(api.DELETE('/api/account/members/{user_id}', { params: { path: { user_id: m.user_id } } })),
      me ? 'You left the account.' : `${m.name} was removed from the account.`,
      me ? onLeft : undefined,
    );
  }

  function changeRole(m: Member, next: Assignable) {
    act(
      () =>
        call(
          api.PATCH('/api/account/members/{user_id}', {
            params: { path: { user_id: m.user_id } },
            body: { role: next },
          }),
        ),
      `${m.name} is now ${next === 'admin' ? 'an admin' : 'a member'}.`,
    );
  }

  function withdraw(invitation: PendingInvitation) {
    act(
      () => send(api.DELETE('/api/account/invitations/{id}', { params: { path: { id: invitation.id } } })),
      `The invitation to ${invitation.email} was withdrawn.`,
    );
  }

  const members = team.data?.members ?? [];
  const invitations = team.data?.invitations ?? [];
  return (
    <section className="card team" aria-labelledby="team-heading">
      <h2 id="team-heading">Team</h2>
      {notice && (
        <p className="notice" role="status">
          {notice}
        </p>
      )}
      <ErrorMessage error={team.error ?? error} />
      {team.data && (
        <>
          <UsageBar reading={seatsReading(team.data.seats)} label="Seats" />
          <table className="members">
            <caption className="visually-hidden">Members</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Email</th>
                <th scope="col">Role</th>
                <th scope="col">Joined</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {members.map((m) => {
                const me = isMe(m);
                const editable = manage && m.role !== 'owner' && !me;
                return (
                  <tr key={m.user_id} data-testid="member">
                    <th scope="row">
                      {m.name}
                      {me && ' (you)'}
                    </th>
                    <td>{m.email}</td>
                    <td>
                      {editable ? (
                        <select
                          aria-label={`Role of ${m.name}`}
                          value={m.role}
                          disabled={busy}
                          onChange={(e) => changeRole(m, asAssignable(e.target.value))}
                        >
                          {ASSIGNABLE.map((r) => (
                            <option key={r} value={r}>
                              {ROLE_TEXT[r]}
                            </option>
                          ))}
                        </select>
                      ) : (
                        ROLE_TEXT[m.role]
                      )}
                    </td>
                    <td>{formatDate(m.joined_at)}</td>
                    <td>
                      {(editable || (me && m.role !== 'owner')) && (
                        <button
                          type="button"
                          className="link"
                          disabled={busy}
                          onClick={() => setConfirm(m)}
                          aria-label={me ? 'Leave this account' : `Remove ${m.name}`}
                        >
                          {me ? 'Leave' : 'Remove'}
                        </button>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          {confirm && (
            <div className="confirm" role="group" aria-labelledby="remove-question">
              <p id="remove-question">
                {isMe(confirm)
                  ? 'Leave this account? You lose access to its plan, usage and invoices at once.'
                  : `Remove ${confirm.name} (${confirm.email}) from the account? They lose access at once and free a seat.`}
              </p>
              <div className="actions">
                <button type="button" className="danger" disabled={busy} onClick={() => remove(confirm)}>
                  {isMe(confirm) ? 'Yes, leave' : `Yes, remove ${confirm.name}`}
                </button>
                <button type="button" disabled={busy} onClick={() => setConfirm(null)}>
                  {isMe(confirm) ? 'Stay' : 'Keep'}
                </button>
              </div>
            </div>
          )}
          {invitations.length > 0 && (
            <>
              <h3 id="invitations-heading">Pending invitations</h3>
              <table className="members" aria-labelledby="invitations-heading">
                <thead>
                  <tr>
                    <th scope="col">Email</th>
                    <th scope="col">Role</th>
                    <th scope="col">Sent</th>
                    <th scope="col">Expires</th>
                    {manage && (
                      <th scope="col">
                        <span className="visually-hidden">Actions</span>
                      </th>
                    )}
                  </tr>
                </thead>
                <tbody>
                  {invitations.map((i) => (
                    <tr key={i.id} data-testid="invitation">
                      <th scope="row">{i.email}</th>
                      <td>{ROLE_TEXT[i.role]}</td>
                      <td>{formatDate(i.created_at)}</td>
                      <td>{formatDate(i.expires_at)}</td>
                      {manage && (
                        <td>
                          <button
                            type="button"
                            className="link"
                            disabled={busy}
                            onClick={() => withdraw(i)}
                            aria-label={`Withdraw the invitation to ${i.email}`}
                          >
                            Withdraw
                          </button>
                        </td>
                      )}
                    </tr>
                  ))}
                </tbody>
              </table>
            </>
          )}
          {manage && (
            <Invite
              unverifiedEmail={session?.emailVerified === false ? session.email : null}
              plans={plans}
              onUpgrade={onUpgrade}
              onInvited={(email) => {
                setError(null);
                setNotice(`Invitation sent to ${email}.`);
                team.reload();
              }}
            />
          )}
        </>
      )}
      {!team.data && !team.error && <p role="status">Loading the team…</p>}
    </section>
  );
}

const NEEDS_VERIFIED_ID = 'invite-needs-verified';

function Invite({
  unverifiedEmail,
  plans,
  onUpgrade,
  onInvited,
}: {
  /** The caller's address while it is not confirmed: inviting needs it. */
  unverifiedEmail: string | null;
  plans: Plan[];
  onUpgrade?: (t: PlanTarget) => void;
  onInvited: (email: string) => void;
}) {
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const refused = error instanceof ApiError && error.code === 'quota_exceeded' ? error : null;
  const unconfirmed = error instanceof ApiError && error.code === 'email_not_verified';

  async function submit(e: FormEvent<HTMLFormElement>) {
    e.preventDefault();
    const formElement = e.currentTarget;
    const form = new FormData(formElement);
    setBusy(true);
    setError(null);
    try {
      const invitation = await call(
        api.POST('/api/account/invitations', {
          body: { email: String(form.get('email') ?? '').trim(), role: asAssignable(form.get('role')) },
        }),
      );
      formElement.reset();
      onInvited(invitation.email);
    } catch (err) {
      setError(err);
      // The session thought otherwise: the notice asks to confirm from now on.
      if (err instanceof ApiError && err.code === 'email_not_verified') markEmailUnverified();
    } finally {
      setBusy(false);
    }
  }

  return (
    <form
      className="invite"
      onSubmit={submit}
      noValidate
      aria-labelledby="invite-heading"
      aria-describedby={unverifiedEmail && !unconfirmed ? NEEDS_VERIFIED_ID : undefined}
    >
      <h3 id="invite-heading">Invite someone</h3>
      {unverifiedEmail && !unconfirmed && (
        <p className="warning-text" id={NEEDS_VERIFIED_ID}>
          Inviting someone needs a confirmed email address. Open the link we sent to {unverifiedEmail} first.
        </p>
      )}
      <Field label="Email address" name="email" type="email" autoComplete="off" required error={error} />
      <div className="field">
        <label htmlFor="field-role">Role</label>
        <select id="field-role" name="role" defaultValue="member">
          {ASSIGNABLE.map((r) => (
            <option key={r} value={r}>
              {ROLE_TEXT[r]}
            </option>
          ))}
        </select>
      </div>
      {refused ? (
        <QuotaPrompt message={refused.message} upgradeTo={refused.upgradeTo} plans={plans} onUpgrade={onUpgrade} />
      ) : unconfirmed ? (
        <div className="error" role="alert" id={FORM_ERROR_ID}>
          <p>Confirm your email address before inviting anyone.</p>
          <p>{error.message}</p>
        </div>
      ) : (
        <ErrorMessage error={error} id={FORM_ERROR_ID} />
      )}
      <button type="submit" className="primary" disabled={busy}>
        Send invitation
      </button>
    </form>
  );
}
