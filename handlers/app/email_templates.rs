//! The emails' words, in text and HTML, from an outbox message and its user.

use std::collections::BTreeMap;

use crate::domain::ports::EmailMessage;
use crate::domain::records::{EmailKind, OutboxMessage};
use crate::domain::user::User;

/// Links the emails point to.
#[derive(Debug, Clone)]
pub struct Links {
    pub dashboard: String,
    pub billing: String,
    pub pricing: String,
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

/// Subject, paragraphs and one call to action for a message.
fn words(
    kind: EmailKind,
    d: &BTreeMap<String, String>,
    links: &Links,
) -> (String, Vec<String>, (String, String)) {
    let plan = d.get("plan").cloned().unwrap_or_else(|| "KRAFTD".into());
    let amount = d
        .get("amount")
        .map(|a| {
            format!(
                "${a} {}",
                d.get("currency")
                    .map(|c| c.to_uppercase())
                    .unwrap_or_default()
            )
        })
        .unwrap_or_default();
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
    }
}

pub fn render(message: &OutboxMessage, user: &User, links: &Links) -> EmailMessage {
    let (subject, paragraphs, (action, url)) = words(message.kind, &message.data, links);
    let greeting = format!("Hello {},", user.name.as_str());
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
        to: user.email.clone(),
        subject,
        text,
        html,
    }
}
