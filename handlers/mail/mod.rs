//! Mail adapters: SMTP through lettre (TLS or STARTTLS, as Azure
//! Communication Services and SendGrid offer it), and, for local runs, one
//! `.eml` file per message under the data directory.

use std::path::PathBuf;

use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::domain::ports::{EmailMessage, MailError, Mailer};

fn build(from: &Mailbox, message: &EmailMessage) -> Result<Message, MailError> {
    let to: Mailbox = message
        .to
        .as_str()
        .parse()
        .map_err(|e| MailError(format!("recipient: {e}")))?;
    let domain = from.email.domain().to_owned();
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(&message.subject)
        // One id per outbox message: a resend after a crash is the same message.
        .message_id(Some(format!(
            "<{}@{domain}>",
            message.id.replace(['<', '>', '@', ' '], "-")
        )))
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(message.text.clone()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(message.html.clone()),
                ),
        )
        .map_err(|e| MailError(format!("message: {e}")))
}

pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    /// `smtps://user:pass@host:465` (TLS), `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS), or plain `smtp://host:port` for a relay on loopback.
    pub fn new(url: &str, from: Mailbox) -> Result<Self, String> {
        crate::tls::install_crypto_provider();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| e.to_string())?
            .timeout(Some(std::time::Duration::from_secs(20)))
            .build();
        Ok(Self { transport, from })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, message: &EmailMessage) -> Result<(), MailError> {
        let email = build(&self.from, message)?;
        self.transport
            .send(email)
            .await
            .map(drop)
            .map_err(|e| MailError(e.to_string()))
    }
}

/// Writes each message as `<id>.eml` under a folder: the local default.
pub struct FileMailer {
    transport: AsyncFileTransport<Tokio1Executor>,
    from: Mailbox,
}

impl FileMailer {
    pub fn new(dir: PathBuf, from: Mailbox) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            transport: AsyncFileTransport::new(dir),
            from,
        })
    }
}

#[async_trait]
impl Mailer for FileMailer {
    async fn send(&self, message: &EmailMessage) -> Result<(), MailError> {
        let email = build(&self.from, message)?;
        self.transport
            .send(email)
            .await
            .map(drop)
            .map_err(|e| MailError(e.to_string()))
    }
}
