use std::net::IpAddr;
use std::str::FromStr;

use crate::auth::token::{ExternalClaims, Subject};
use crate::domain::account::{own_account, AccountId, Role};
use crate::domain::plan::{BillingInterval, PlanId};
use crate::domain::ports::{CheckoutSession, StoreError, Uniqueness, Versioned};
use crate::domain::subscription::Subscription;
use crate::domain::user::{
    check_password_strength, Email, ExternalIdentity, PersonName, User, UserId,
};

use super::members::AccountSummary;
use super::{AppError, Billing};

/// A registration as the caller sent it; checked here, field by field.
#[derive(Debug, Clone)]
pub struct RegisterInput {
    pub email: String,
    pub password: String,
    pub name: String,
    pub plan_id: String,
    pub billing_interval: Option<String>,
}

/// A signed-in user, their access token and the account they act on by default.
pub struct Session {
    pub access_token: String,
    pub expires_in: u64,
    pub user: User,
    pub account: Option<AccountSummary>,
}

pub enum Registered {
    /// Free plan: active at once.
    Active(Box<Session>),
    /// Paid plan: the user must pay at this checkout first.
    Checkout(CheckoutSession),
}

pub(super) fn parse_plan(raw: &str) -> Result<PlanId, AppError> {
    PlanId::from_str(raw.trim())
        .map_err(|_| AppError::invalid("plan_id", "must be one of free, pro, enterprise"))
}

pub(super) fn parse_interval(raw: Option<&str>) -> Result<BillingInterval, AppError> {
    match raw.map(str::trim) {
        None | Some("monthly") => Ok(BillingInterval::Monthly),
        Some("annual") => Ok(BillingInterval::Annual),
        Some(_) => Err(AppError::invalid(
            "billing_interval",
            "must be monthly or annual",
        )),
    }
}

impl Billing {
    pub async fn register(&self, input: RegisterInput) -> Result<Registered, AppError> {
        // Per email, before any work: registration is not a way to probe or flood.
        let key = self
            .throttle
            .email_key(crate::auth::throttle::Purpose::Registration, &input.email);
        self.throttle.admit_account(&key)?;
        let email = Email::parse(&input.email).map_err(|p| AppError::invalid("email", p))?;
        let name = PersonName::parse(&input.name).map_err(|p| AppError::invalid("name", p))?;
        check_password_strength(&input.password, &email)
            .map_err(|p| AppError::invalid("password", p))?;
        let plan_id = parse_plan(&input.plan_id)?;
        let interval = match parse_interval(input.billing_interval.as_deref())? {
            // Free has one price: an interval asked for is moot.
            _ if plan_id == PlanId::Free => BillingInterval::Monthly,
            interval => interval,
        };
        self.check_self_serve(plan_id, interval)?;
        // Refuse before writing anything: no half-created account.
        if plan_id.is_paid() && !self.payments.is_configured() {
            return Err(AppError::Payments(
                crate::domain::ports::PaymentsError::NotConfigured,
            ));
        }
        if self.store.user_by_email(&email).await?.is_some() {
            return Err(AppError::EmailTaken);
        }

        let now = self.clock.now();
        let subscription = if plan_id.is_paid() {
            Subscription::awaiting_payment(plan_id, interval)
        } else {
            Subscription::free(now)
        };
        let mut user = User::with_password(
            UserId(uuid::Uuid::new_v4()),
            email,
            name,
            self.passwords.hash(input.password).await?,
            now,
        );
        // The verification link goes out with the registration, in the
        // same write; paying does not wait for it.
        let (pending, verify) = self.verification_link(&user, now);
        user.verification = Some(pending);
        let (mut account, owner) = own_account(&user, subscription);
        let mut messages = vec![verify];
        messages.extend(self.account_created_events(&mut account, &owner, now));
        let etag = self
            .store
            .register(&user, &account, &owner, &messages)
            .await
            .map_err(|e| match e {
                // Two registrations raced past the lookup above.
                StoreError::Conflict(Uniqueness::Email) => AppError::EmailTaken,
                e => AppError::Store(e),
            })?;

        if plan_id.is_paid() {
            let checkout = self
                .begin_checkout(account, etag, plan_id, interval, "registration", None)
                .await?;
            return Ok(Registered::Checkout(checkout));
        }
        let account = AccountSummary {
            account,
            role: Role::Owner,
        };
        Ok(Registered::Active(Box::new(
            self.session(user, Some(account)),
        )))
    }

    /// Signs in with a password; `client` is the address the request
    /// comes from, which keys the back-off after failed attempts.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<Session, AppError> {
        // Per email, known or not alike, before the store and the hash: its
        // rate, then the back-off its failed logins impose, from this
        // address and from everywhere.
        let key = self.throttle.login_keys(email, client);
        self.throttle.admit_login(&key)?;
        // An unparsable email is just an unknown one: same answer, same work.
        let found = match Email::parse(email) {
            Ok(email) => self.store.user_by_email(&email).await?,
            Err(_) => None,
        };
        let phc = found.as_ref().and_then(|u| u.value.password_hash.clone());
        if !self.passwords.verify(password.to_owned(), phc).await? {
            self.throttle.login_failed(&key);
            return Err(AppError::BadCredentials);
        }
        self.throttle.login_succeeded(&key);
        let user = found.expect("a verified password belongs to a user").value;
        let accounts = self.accounts_of(&user).await?;
        // The same default as a request that names no account.
        let own = AccountId::own_account_of(user.id);
        let default = accounts
            .iter()
            .position(|a| a.account.id == own)
            .or_else(|| accounts.iter().position(|a| a.role == Role::Owner))
            .or((!accounts.is_empty()).then_some(0))
            .map(|i| accounts[i].clone());
        Ok(self.session(user, default))
    }

    fn session(&self, user: User, account: Option<AccountSummary>) -> Session {
        let issued = self.tokens.issue(&user, self.clock.now());
        Session {
            access_token: issued.access_token,
            expires_in: issued.expires_in,
            user,
            account,
        }
    }

    /// The user a bearer token speaks for, as stored now.
    pub async fn authenticate(&self, token: &str) -> Result<Versioned<User>, AppError> {
        let subject = self.tokens.verify(token, self.clock.now()).await?;
        self.user_of(subject).await
    }

    /// The user a verified token speaks for, as stored now. A token for the
    /// service API (`SERVICE_TOKEN_AUDIENCE`) names no user, not even when
    /// a person holds it.
    pub(super) async fn user_of(&self, subject: Subject) -> Result<Versioned<User>, AppError> {
        let found =
            match subject {
                Subject::Local(id) => self.store.user_by_id(id).await?,
                Subject::External(claims) => return self.user_of_identity(claims).await,
                Subject::Service(_) => return Err(AppError::Unauthenticated(
                    "this token is for KRAFTD's services (SERVICE_TOKEN_AUDIENCE), not a user's"
                        .into(),
                )),
            };
        found.ok_or_else(|| {
            AppError::Unauthenticated("the user this token names no longer exists".into())
        })
    }

    /// The user an identity provider's token names, by (issuer, subject)
    /// alone; the first token of an unknown pair provisions the user with
    /// their own Free account. The token's email links to no other user.
    pub async fn user_of_identity(
        &self,
        claims: ExternalClaims,
    ) -> Result<Versioned<User>, AppError> {
        let identity = ExternalIdentity {
            issuer: claims.issuer.clone(),
            subject: claims.subject.clone(),
        };
        let id = UserId::of_identity(&identity);
        if let Some(user) = self.store.user_by_id(id).await? {
            return Ok(self.refreshed(user, &claims).await);
        }
        let unusable = |what: &str| {
            AppError::Unauthenticated(format!(
                "the identity provider's token carries no usable {what}"
            ))
        };
        let email = claims
            .email
            .as_deref()
            .and_then(|e| Email::parse(e).ok())
            .ok_or_else(|| unusable("email"))?;
        let name = claims
            .name
            .as_deref()
            .and_then(|n| PersonName::parse(n).ok())
            .or_else(|| PersonName::parse(email.as_str().split('@').next()?).ok())
            .ok_or_else(|| unusable("name"))?;
        let now = self.clock.now();
        let user = User::of_identity(identity, email, claims.email_verified, name, now);
        let (mut account, owner) = own_account(&user, Subscription::free(now));
        let events = self.account_created_events(&mut account, &owner, now);
        match self.store.register(&user, &account, &owner, &events).await {
            Ok(_) => {
                tracing::info!(user_id = %user.id, "user provisioned from the identity provider")
            }
            // Two first requests raced: the other one provisioned them.
            Err(StoreError::Conflict(Uniqueness::Id)) => {}
            Err(e) => return Err(e.into()),
        }
        self.store.user_by_id(id).await?.ok_or_else(|| {
            AppError::Store(StoreError::unavailable(
                "a provisioned user is not readable yet",
            ))
        })
    }

    /// The stored user with what their provider's token says now: email,
    /// name and whether the email is verified follow the provider (the
    /// user is found by (issuer, subject), so this moves no one). Best
    /// effort: a lost race leaves the change to the next request.
    async fn refreshed(&self, user: Versioned<User>, claims: &ExternalClaims) -> Versioned<User> {
        let mut now = user.value.clone();
        if let Some(email) = claims.email.as_deref().and_then(|e| Email::parse(e).ok()) {
            if email != now.email {
                now.email = email;
                now.email_verified = claims.email_verified;
            }
        }
        // Proven here once (an accepted invitation), an address stays proven.
        now.email_verified |= claims.email_verified;
        if let Some(name) = claims
            .name
            .as_deref()
            .and_then(|n| PersonName::parse(n).ok())
        {
            now.name = name;
        }
        if now == user.value {
            return user;
        }
        let next = Versioned {
            value: now,
            etag: user.etag.clone(),
        };
        match self.store.replace_user(&next).await {
            Ok(etag) => Versioned {
                value: next.value,
                etag,
            },
            Err(e) => {
                tracing::warn!(user_id = %user.value.id, error = %e, "the provider's newer profile could not be stored yet");
                user
            }
        }
    }
}
