// Names for the API's shapes, all taken from the generated schema.d.ts
// (`npm run gen:api`), so a change in the OpenAPI document shows up here as
// a type error rather than a runtime surprise.
import type { components, paths } from './schema';

type Json<P extends keyof paths, M extends keyof paths[P], S extends number> =
  paths[P][M] extends { responses: infer R }
    ? R extends Record<S, { content: { 'application/json': infer B } }>
      ? B
      : never
    : never;

export type PlanList = Json<'/api/plans', 'get', 200>;
export type Plan = PlanList['plans'][number];
export type PlanId = Plan['id'];
export type Price = Plan['prices'][number];
export type BillingInterval = Price['interval'];
/** A plan one signs up for without sales; a paid one a subscription moves to. */
export type SelfServePlan = components['schemas']['SelfServePlan'];
export type PaidSelfServePlan = components['schemas']['PaidSelfServePlan'];
export type Subscription = Json<'/api/billing/subscription', 'get', 200>;
export type PlanChangePreview = Json<'/api/billing/preview-change', 'post', 200>;
export type InvoicePage = Json<'/api/billing/invoices', 'get', 200>;
export type Invoice = InvoicePage['invoices'][number];
export type UsageReport = Json<'/api/usage', 'get', 200>;
/** Where one metric stands against the plan's limit: used, held by live
 * reservations (which count against the limit too), limit and reset. */
export type MeterReading = UsageReport['usage'][string];
export type Registered = Json<'/api/auth/register/with-plan', 'post', 201>;
export type TokenResponse = Json<'/api/auth/login', 'post', 200>;
export type AccountList = Json<'/api/accounts', 'get', 200>;
/** One of the caller's accounts (organizations), with the caller's role in it. */
export type AccountSummary = AccountList['accounts'][number];
export type Role = AccountSummary['role'];
export type Team = Json<'/api/account/members', 'get', 200>;
export type Member = Team['members'][number];
export type PendingInvitation = Team['invitations'][number];
export type Seats = Team['seats'];
export type Invitation = Json<'/api/account/invitations', 'post', 201>;
export type AcceptedInvitation = Json<'/api/invitations/{token}/accept', 'post', 200>;
/** The signed-in user, with whether their email address is confirmed. */
export type UserProfile = Json<'/api/me', 'get', 200>;
export type VerifiedEmail = Json<'/api/auth/verify-email', 'post', 200>;
export type VerificationResent = Json<'/api/auth/verify-email/resend', 'post', 202>;

// A name above that stops matching schema.d.ts (a path or status code
// renamed) would silently become `never`; this fails to compile instead.
type Defined<T> = [T] extends [never] ? false : true;
type AllTrue<T extends true[]> = T;
export type SchemaNamesResolve = AllTrue<
  [
    Defined<PlanList>,
    Defined<Subscription>,
    Defined<PlanChangePreview>,
    Defined<InvoicePage>,
    Defined<UsageReport>,
    Defined<MeterReading>,
    Defined<Registered>,
    Defined<TokenResponse>,
    Defined<AccountList>,
    Defined<Team>,
    Defined<Invitation>,
    Defined<AcceptedInvitation>,
    Defined<UserProfile>,
    Defined<VerifiedEmail>,
    Defined<VerificationResent>,
  ]
>;
