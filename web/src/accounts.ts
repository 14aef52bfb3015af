// Facts about accounts (organizations) and roles the pages need, in one
// place. The service decides who may do what (403 `forbidden` otherwise);
// the pages only leave out what the caller's role cannot do.
import type { AccountSummary, Role } from './api/types';

export const ROLE_TEXT: Record<Role, string> = {
  owner: 'Owner',
  admin: 'Admin',
  member: 'Member',
};

/** Owners and admins change the plan, cancel, resume, open the customer
 * portal, and invite, remove and change the roles of members. */
export function mayManage(role: Role | undefined): boolean {
  return role === 'owner' || role === 'admin';
}

/** The account the pages act on: the one the session names while the user
 * still belongs to it, else the service's default, the one the user owns,
 * else the first. */
export function chooseAccount(accounts: AccountSummary[], wanted?: string): AccountSummary | null {
  return (
    accounts.find((a) => a.id === wanted) ?? accounts.find((a) => a.role === 'owner') ?? accounts[0] ?? null
  );
}
