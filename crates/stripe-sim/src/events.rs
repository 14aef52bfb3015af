//! Signing and delivering webhook events, one at a time in creation order.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use kraftd_domain::clock::Clock;

pub(crate) enum Delivery {
    Event {
        url: String,
        event: Value,
    },
    /// Answered once everything queued before it has been delivered.
    Flush(oneshot::Sender<()>),
}

pub(crate) fn signature(secret: &str, payload: &str, timestamp: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{timestamp}.{payload}").as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// A single worker keeps deliveries in emission order even when API calls
/// emit them from several requests at once.
/// `delivered` is told each event id an endpoint answered 2xx.
pub(crate) async fn delivery_worker(
    mut rx: mpsc::UnboundedReceiver<Delivery>,
    delivered: impl Fn(&str),
    clock: Arc<dyn Clock>,
    secret: String,
) {
    while let Some(d) = rx.recv().await {
        match d {
            Delivery::Event { url, event } => {
                let status = post(&url, &event.to_string(), &clock, &secret).await;
                if (200..300).contains(&status) {
                    delivered(event["id"].as_str().unwrap_or_default());
                } else {
                    tracing::warn!(status, event = %event["id"], "webhook delivery failed");
                }
            }
            Delivery::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// POSTs a payload to a plain-HTTP (loopback) URL; returns the status, 0 on
/// any transport failure. Hand-written so the library needs no HTTP client.
pub(crate) async fn post(url: &str, payload: &str, clock: &Arc<dyn Clock>, secret: &str) -> u16 {
    let Some(rest) = url.strip_prefix("http://") else {
        tracing::warn!(url, "stripe sim delivers only to http:// URLs");
        return 0;
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let sig = signature(secret, payload, clock.now().timestamp());
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\n\
         Content-Type: application/json; charset=utf-8\r\nStripe-Signature: {sig}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(authority).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    // Stripe gives up on an endpoint after a while too.
    match tokio::time::timeout(Duration::from_secs(30), exchange).await {
        Ok(Ok(response)) => String::from_utf8_lossy(&response)
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}
