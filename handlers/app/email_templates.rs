//! The emails' words, in text and HTML, from an outbox message and its account.

use std::collections::BTreeMap;

use crate::domain::account::Account;
use crate::domain::money::{Currency, Money};
use crate::domain::ports::EmailMessage;
use crate::domain::records::{EmailKind, OutboxMessage};

/// Links the emails point to.
#[derive(Debug, Clone)]
pub struct Links {
    pub dashboard: String,
    pub billing: String,
    pub pricing: String,
    /// An invitation's link is this, `/`, and its token.
    pub invitations: String,
    /// An email verification link is this, `/`, and its token.
    pub verify_email: String,
}

fn date(v: Option<&String>) -> String {
    v.and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.format("%B %-d, %Y").to_string())
        .unwrap_or_else(|| "the end of your billing period".into())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The message's amount for people, formatted by its currency. Messages
/// written before amounts had a currency were all in US dollars: they hold
/// `amount_cents` or only `amount`, a decimal string.
fn amount(d: &BTreeMap<String, String>) -> String {
    let currency = d
        .get("currency")
        .and_then(|c| Currency::parse(c).ok())
        .unwrap_or(Currency::USD);
    let minor = d
        .get("amount_minor")
        .or_else(|| d.get("amount_cents"))
        .and_then(|a| a.parse().ok());
    match (minor, d.get("amount")) {
        (Some(amount), _) => Money { amount, currency }.display(),
        (None, Some(decimal)) => format!("${decimal}"),
        (None, None) => String::new(),
    }
}

/// Subject, paragraphs and one call to action for a message.
fn words(
    kind: EmailKind,
    d: &BTreeMap<String, String>,
    links: &Links,
) -> (String, Vec<String>, (String, String)) {
    let plan = d.get("plan").cloned().unwrap_or_else(|| "KRAFTD".into());
    let amount = amount(d);
    let invoice = d
        .get("invoice_url")
        .cloned()
        .unwrap_or_else(|| links.billing.clone());
    match kind {
        EmailKind::SubscriptionConfirmed => (
            format!("Welcome to KRAFTD {plan}"),
            vec![format!(
                "Your {plan} subscription is active. Everything in your plan is available now."
            )],
            ("Open KRAFTD".into(), links.dashboard.clone()),
        ),
        EmailKind::PaymentReceipt => (
            format!("Your KRAFTD receipt: {amount}"),
            vec![
                format!("We received your payment of {amount} for {plan}."),
                "Thank you. The invoice is available at the link below.".into(),
            ],
            ("View invoice".into(), invoice),
        ),
        EmailKind::PaymentFailed => (
            "Your KRAFTD payment did not go through".into(),
            vec![
                format!("We could not collect {amount} for {plan}."),
                "Your plan stays active for a few days while you update your payment method."
                    .into(),
            ],
            ("Fix payment".into(), invoice),
        ),
        EmailKind::CancellationScheduled => (
            format!(
                "Your {plan} subscription will end on {}",
                date(d.get("ends_at"))
            ),
            vec![
                format!(
                    "You keep {plan} until {}. After that your account moves to Free.",
                    date(d.get("ends_at"))
                ),
                "Changed your mind? You can resume any time before then.".into(),
            ],
            ("Resume subscription".into(), links.billing.clone()),
        ),
        EmailKind::CancellationWithdrawn => (
            format!("Your {plan} subscription continues"),
            vec![format!(
                "Your cancellation is withdrawn; {plan} renews as usual."
            )],
            ("Billing".into(), links.billing.clone()),
        ),
        EmailKind::SubscriptionEnded => (
            format!("Your {plan} subscription has ended"),
            vec!["Your account is now on the Free plan. Your documents are safe.".into()],
            ("See plans".into(), links.pricing.clone()),
        ),
        EmailKind::QuotaWarning => {
            let percent = d.get("percent").cloned().unwrap_or_default();
            let used = d.get("used").cloned().unwrap_or_default();
            let limit = d.get("limit").cloned().unwrap_or_default();
            let what = d
                .get("limit_name")
                .cloned()
                .unwrap_or_else(|| "documents_per_month".into())
                .replace('_', " ");
            let reached = if percent == "100" {
                "reached"
            } else {
                "nearly reached"
            };
            (
                format!("You have used {percent}% of your KRAFTD {what}"),
                vec![
                    format!("You have {reached} your {plan} limit: {used} of {limit} {what} this month."),
                    "Upgrade to keep going without interruption.".into(),
                ],
                ("See plans".into(), links.pricing.clone()),
            )
        }
        EmailKind::TrialEnding => (
            format!("Your KRAFTD {plan} trial ends on {}", date(d.get("trial_end"))),
            vec![format!(
                "Your trial of {plan} ends on {}. Your subscription then continues on your payment method.",
                date(d.get("trial_end"))
            )],
            ("Billing".into(), links.billing.clone()),
        ),
        EmailKind::PlanChanged => (
            format!("You are now on KRAFTD {plan}"),
            vec![format!(
                "Your plan changed from {} to {plan}. The new limits apply now.",
                d.get("from_plan")
                    .cloned()
                    .unwrap_or_else(|| "your previous plan".into())
            )],
            ("Billing".into(), links.billing.clone()),
        ),
        EmailKind::Invitation => {
            let account = d.get("account").cloned().unwrap_or_default();
            let inviter = d
                .get("inviter")
                .cloned()
                .unwrap_or_else(|| "A colleague".into());
            let role = d.get("role").cloned().unwrap_or_else(|| "member".into());
            (
                format!("{inviter} invited you to {account} on KRAFTD"),
                vec![
                    format!("{inviter} invited you to join {account} on KRAFTD as {role}."),
                    format!(
                        "The invitation can be used once, until {}.",
                        date(d.get("expires_at"))
                    ),
                ],
                (
                    "Accept invitation".into(),
                    d.get("invitation_url")
                        .cloned()
                        .unwrap_or_else(|| links.dashboard.clone()),
                ),
            )
        }
        EmailKind::MemberAdded => {
            let account = d.get("account").cloned().unwrap_or_default();
            (
                format!("You joined {account} on KRAFTD"),
                vec![format!(
                    "You are now a member of {account}: you share its plan and usage."
                )],
                ("Open KRAFTD".into(), links.dashboard.clone()),
            )
        }
        EmailKind::MemberRemoved => {
            let account = d.get("account").cloned().unwrap_or_default();
            (
                format!("You were removed from {account} on KRAFTD"),
                vec![format!(
                    "You are no longer a member of {account}. Your own account is unchanged."
                )],
                ("Open KRAFTD".into(), links.dashboard.clone()),
            )
        }
        EmailKind::SeatLimitReached => {
            let account = d.get("account").cloned().unwrap_or_default();
            let seats = d.get("seats").cloned().unwrap_or_default();
            (
                format!("{account} has no free seats on {plan}"),
                vec![
                    format!("All {seats} seats of {account}'s {plan} plan are taken, so an invitation was refused."),
                    "Upgrade, or remove a member or a pending invitation, to invite someone new.".into(),
                ],
                ("See plans".into(), links.pricing.clone()),
            )
        }
        EmailKind::VerifyEmail => (
            "Confirm your email address for KRAFTD".into(),
            vec![
                "Please confirm that this is your email address. Until you do, you cannot invite others to your team.".into(),
                format!(
                    "The link can be used once, until {}. If you did not sign up for KRAFTD, ignore this email.",
                    date(d.get("expires_at"))
                ),
            ],
            (
                "Confirm email address".into(),
                d.get("verify_url")
                    .cloned()
                    .unwrap_or_else(|| links.dashboard.clone()),
            ),
        ),
    }
}

/// A message names its recipient (an invitee, a member); without one it
/// goes to the account's billing email. `kind` is the message's, an email's.
pub fn render(
    message: &OutboxMessage,
    kind: EmailKind,
    account: &Account,
    links: &Links,
) -> EmailMessage {
    let (subject, paragraphs, (action, url)) = words(kind, &message.data, links);
    let (to, name) = match &message.to {
        Some(to) => (to.clone(), message.data.get("recipient_name").cloned()),
        None => (account.billing_email.clone(), Some(account.name.clone())),
    };
    let greeting = match name {
        Some(name) => format!("Hello {name},"),
        None => "Hello,".to_owned(),
    };
    let text = format!(
        "{greeting}\n\n{}\n\n{action}: {url}\n\n— KRAFTD Billing\n",
        paragraphs.join("\n\n")
    );
    let html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><p>{}</p>{}<p><a href=\"{}\">{}</a></p><p>— KRAFTD Billing</p></body></html>",
        escape(&greeting),
        paragraphs.iter().map(|p| format!("<p>{}</p>", escape(p))).collect::<String>(),
        escape(&url),
        escape(&action),
    );
    EmailMessage {
        id: message.id.clone(),
        to,
        subject,
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::account::AccountId;
    use crate::domain::subscription::Subscription;
    use crate::domain::user::Email;

    fn links() -> Links {
        Links {
            dashboard: "https://kraftd.io/dashboard".into(),
            billing: "https://kraftd.io/billing".into(),
            pricing: "https://kraftd.io/pricing".into(),
            invitations: "https://kraftd.io/invitations".into(),
            verify_email: "https://kraftd.io/verify-email".into(),
        }
    }

    fn account() -> Account {
        let at = chrono::DateTime::UNIX_EPOCH;
        Account {
            id: AccountId(uuid::Uuid::nil()),
            name: "Acme & Co".into(),
            billing_email: Email::parse("billing@acme.io").unwrap(),
            created_at: at,
            subscription: Subscription::free(at),
            last_event_at: None,
            overrides: Vec::new(),
            enterprise_offer: None,
        }
    }

    fn message(kind: EmailKind, to: Option<&str>, data: &[(&str, &str)]) -> OutboxMessage {
        OutboxMessage {
            id: "m1".into(),
            account_id: AccountId(uuid::Uuid::nil()),
            to: to.map(|t| Email::parse(t).unwrap()),
            kind: kind.into(),
            data: data
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: None,
            created_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn an_invitation_goes_to_the_invitee_with_its_link() {
        let m = message(
            EmailKind::Invitation,
            Some("new@hire.io"),
            &[
                ("account", "Acme & Co"),
                ("inviter", "Ada"),
                ("role", "admin"),
                ("invitation_url", "https://kraftd.io/invitations/abc.def"),
                ("expires_at", "2026-12-13T10:00:00+00:00"),
            ],
        );
        let email = render(&m, m.kind.email().unwrap(), &account(), &links());
        assert_eq!(email.to.as_str(), "new@hire.io");
        assert_eq!(email.subject, "Ada invited you to Acme & Co on KRAFTD");
        assert!(email.text.starts_with("Hello,"));
        assert!(email
            .text
            .contains("Accept invitation: https://kraftd.io/invitations/abc.def"));
        assert!(email.text.contains("until December 13, 2026"));
        // Names are escaped in HTML.
        assert!(email.html.contains("Acme &amp; Co") && !email.html.contains("Acme & Co"));
    }

    #[test]
    fn amounts_are_formatted_by_their_currency() {
        let receipt = |data: &[(&str, &str)]| {
            let m = message(EmailKind::PaymentReceipt, None, data);
            render(&m, EmailKind::PaymentReceipt, &account(), &links())
        };
        let yen = receipt(&[("amount_minor", "9900"), ("currency", "jpy")]);
        assert_eq!(yen.subject, "Your KRAFTD receipt: ¥9,900");
        let dinar = receipt(&[("amount_minor", "12500"), ("currency", "kwd")]);
        assert!(
            dinar.text.contains("payment of KWD 12.500 for"),
            "{}",
            dinar.text
        );
        let failed = message(
            EmailKind::PaymentFailed,
            None,
            &[("amount_minor", "9900"), ("currency", "eur")],
        );
        let failed = render(&failed, EmailKind::PaymentFailed, &account(), &links());
        assert!(
            failed.text.contains("could not collect €99.00 for"),
            "{}",
            failed.text
        );
        // Written before amounts had a currency: US dollars.
        let cents = receipt(&[
            ("amount_cents", "9900"),
            ("amount", "99.00"),
            ("currency", "usd"),
        ]);
        assert_eq!(cents.subject, "Your KRAFTD receipt: $99.00");
        let decimal = receipt(&[("amount", "99.00")]);
        assert_eq!(decimal.subject, "Your KRAFTD receipt: $99.00");
    }

    #[test]
    fn billing_emails_go_to_the_account_and_member_emails_to_the_member() {
        let receipt = message(EmailKind::PaymentReceipt, None, &[("amount", "99.00")]);
        let email = render(
            &receipt,
            receipt.kind.email().unwrap(),
            &account(),
            &links(),
        );
        assert_eq!(email.to.as_str(), "billing@acme.io");
        assert!(email.text.starts_with("Hello Acme & Co,"));
        let removed = message(
            EmailKind::MemberRemoved,
            Some("gone@acme.io"),
            &[("account", "Acme & Co"), ("recipient_name", "Bob")],
        );
        let email = render(
            &removed,
            removed.kind.email().unwrap(),
            &account(),
            &links(),
        );
        assert_eq!(email.to.as_str(), "gone@acme.io");
        assert!(email.text.starts_with("Hello Bob,"));
        assert_eq!(email.subject, "You were removed from Acme & Co on KRAFTD");
    }
}
