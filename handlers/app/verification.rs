//! Email verification for users who sign in with a password: a single-use
//! link, sent at registration and on request, proves the user reads mail
//! at their address. Inviting others needs it; paying does not.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::auth::throttle::{Limited, Purpose};
use crate::domain::account::AccountId;
use crate::domain::ports::{StoreError, Versioned};
use crate::domain::records::{EmailKind, OutboxMessage};
use crate::domain::user::{EmailVerification, User, UserId, EMAIL_VERIFICATION_VALIDITY};

use super::link_tokens::{new_token, same_hash, token_hash, token_subject};
use super::{AppError, Billing};

impl Billing {
    /// A new verification link for `user`: the outstanding link to store
    /// on the user and the email that carries it, to the user's own
    /// account's outbox.
    pub(super) fn verification_link(
        &self,
        user: &User,
        now: DateTime<Utc>,
    ) -> (EmailVerification, OutboxMessage) {
        let token = new_token(user.id.0);
        let pending = EmailVerification {
            token_hash: token_hash(&token),
            expires_at: now + EMAIL_VERIFICATION_VALIDITY,
        };
        let account_id = AccountId::own_account_of(user.id);
        let message = OutboxMessage {
            // One message per link: the hash names it without revealing it.
            id: format!("{account_id}:verify_email:{}", &pending.token_hash[..32]),
            account_id,
            to: Some(user.email.clone()),
            kind: EmailKind::VerifyEmail.into(),
            data: BTreeMap::from([
                ("recipient_name".to_owned(), user.name.as_str().to_owned()),
                (
                    "verify_url".to_owned(),
                    format!("{}/{token}", self.settings.links.verify_email),
                ),
                ("expires_at".to_owned(), pending.expires_at.to_rfc3339()),
            ]),
            body: None,
            created_at: now,
        };
        (pending, message)
    }

    /// Spends a verification link: the user's email is verified. A used,
    /// superseded, expired or unknown link is `VerificationNotFound`.
    pub async fn verify_email(&self, token: &str) -> Result<User, AppError> {
        let id = token_subject(token)
            .map(UserId)
            .ok_or(AppError::VerificationNotFound)?;
        // No per-user limit: the user id in a link is no secret, so a
        // stranger could spend it, and the token's 256 random bits cannot
        // be guessed. The per-address limit is the route's.
        let hash = token_hash(token);
        // A concurrent write to the user (another link, a name change) is
        // retried; a second use of this link finds it spent.
        for _ in 0..3 {
            let Some(user) = self.store.user_by_id(id).await? else {
                return Err(AppError::VerificationNotFound);
            };
            let now = self.clock.now();
            let admitted = user
                .value
                .verification
                .as_ref()
                .is_some_and(|v| v.pending_at(now) && same_hash(&v.token_hash, &hash));
            if !admitted {
                return Err(AppError::VerificationNotFound);
            }
            let verified = user.value.clone().verified();
            match self
                .store
                .replace_user(&Versioned {
                    value: verified.clone(),
                    etag: user.etag,
                })
                .await
            {
                Ok(_) => {
                    tracing::info!(user_id = %id, "email verified");
                    return Ok(verified);
                }
                Err(StoreError::VersionConflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::VersionConflict.into())
    }

    /// Sends a new verification link (the previous one stops working).
    /// Nothing is sent to a verified address or for an outside identity,
    /// whose provider vouches for its email or does not.
    pub async fn resend_verification(&self, user: &Versioned<User>) -> Result<User, AppError> {
        if user.value.email_verified || !user.value.signs_in_with_password() {
            return Ok(user.value.clone());
        }
        // Each request mails the user: a few a minute at most.
        self.throttle.admit_account(
            &self
                .throttle
                .id_key(Purpose::Verification, user.value.id.0.as_bytes()),
        )?;
        let now = self.clock.now();
        if let Some(wait) = user
            .value
            .verification
            .as_ref()
            .map(|v| v.next_link_at() - now)
            .filter(|wait| *wait > chrono::Duration::zero())
        {
            let ms = wait.num_milliseconds().max(1) as u64;
            return Err(Limited {
                retry_after_seconds: ms.div_ceil(1000),
            }
            .into());
        }
        let (pending, message) = self.verification_link(&user.value, now);
        let mut updated = user.value.clone();
        updated.verification = Some(pending);
        self.store
            .replace_user(&Versioned {
                value: updated.clone(),
                etag: user.etag.clone(),
            })
            .await?;
        // After the link is stored: a crash in between leaves a link no one
        // received, and asking again sends a new one.
        self.store.enqueue(&[message]).await?;
        Ok(updated)
    }

    /// The invitation's address was `user`'s own and they read it there:
    /// their email is verified (best effort; the join already stands).
    pub(super) async fn verified_by_invitation(&self, user: &User) {
        if user.email_verified {
            return;
        }
        let result = async {
            let Some(current) = self.store.user_by_id(user.id).await? else {
                return Ok(());
            };
            if current.value.email != user.email || current.value.email_verified {
                return Ok(());
            }
            let verified = current.value.clone().verified();
            self.store
                .replace_user(&Versioned {
                    value: verified,
                    etag: current.etag,
                })
                .await
                .map(|_| ())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(user_id = %user.id, error = %e, "an accepted invitation could not mark the email verified");
        }
    }
}
