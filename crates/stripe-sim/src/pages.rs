//! The hosted pages a customer would see at Stripe: plain HTML, no script.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::inner::Inner;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} – Stripe simulator</title></head><body><main>\
         <h1>{t}</h1>{body}<p><small>Stripe simulator: no real payment is made.</small></p>\
         </main></body></html>",
        t = escape(title)
    ))
}

fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        page("Not found", &format!("<p>No such {}.</p>", escape(what))),
    )
        .into_response()
}

fn dollars(cents: i64) -> String {
    format!("${}.{:02}", cents / 100, (cents % 100).abs())
}

pub(crate) async fn checkout(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    let st = inner.lock();
    let Some(s) = st.sessions.get(&id) else {
        return not_found("checkout session");
    };
    let price = st.prices.get(&s.price);
    let plan = price
        .and_then(|p| st.products.get(&p.product))
        .map(|p| p.name.clone())
        .unwrap_or_else(|| "Subscription".into());
    let amount = price.map(|p| p.unit_amount * s.quantity).unwrap_or(0);
    let per = price
        .and_then(|p| p.interval.clone())
        .map(|i| format!(" per {i}"))
        .unwrap_or_default();
    if s.status != "open" {
        return page(
            "Checkout",
            &format!("<p>This checkout session is {}.</p>", escape(&s.status)),
        )
        .into_response();
    }
    let cancel = s
        .cancel_url
        .as_ref()
        .map(|u| format!("<p><a href=\"{}\">Cancel and go back</a></p>", escape(u)))
        .unwrap_or_default();
    let body = format!(
        "<p>Plan: <strong>{}</strong></p><p>Amount: <strong>{}</strong>{}</p>\
         <form method=\"post\" action=\"/sim/checkout/{}/pay\"><button type=\"submit\">Pay {}</button></form>{}",
        escape(&plan),
        dollars(amount),
        escape(&per),
        escape(&id),
        dollars(amount),
        cancel
    );
    page(&format!("Subscribe to {plan}"), &body).into_response()
}

pub(crate) async fn pay(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    let result = inner.with(|c| c.complete_checkout(&id));
    inner.flush().await;
    match result {
        Ok(_) => {
            let success = inner
                .lock()
                .sessions
                .get(&id)
                .and_then(|s| s.success_url.clone());
            match success {
                // Stripe fills this template in the success URL.
                Some(url) => {
                    Redirect::to(&url.replace("{CHECKOUT_SESSION_ID}", &id)).into_response()
                }
                None => page(
                    "Payment complete",
                    "<p>Thank you, your subscription is active.</p>",
                )
                .into_response(),
            }
        }
        Err(e) => (
            StatusCode::PAYMENT_REQUIRED,
            page(
                "Payment failed",
                &format!("<p>{}</p>", escape(&e.to_string())),
            ),
        )
            .into_response(),
    }
}

pub(crate) async fn portal(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    let st = inner.lock();
    let Some(p) = st.portal_sessions.get(&id) else {
        return not_found("portal session");
    };
    let back = p
        .return_url
        .as_ref()
        .map(|u| format!("<p><a href=\"{}\">Return to KRAFTD</a></p>", escape(u)))
        .unwrap_or_default();
    page(
        "Billing portal",
        &format!("<p>Customer {}.</p>{back}", escape(&p.customer)),
    )
    .into_response()
}

pub(crate) async fn invoice(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    let st = inner.lock();
    let Some(i) = st.invoices.get(&id) else {
        return not_found("invoice");
    };
    let body = format!(
        "<p>Status: {}</p><p>Amount due: {}</p><p>Amount paid: {}</p><p><a href=\"/sim/invoices/{}/pdf\">Download PDF</a></p>",
        escape(&i.status),
        dollars(i.amount_due),
        dollars(i.amount_paid),
        escape(&id)
    );
    page(
        &format!("Invoice {}", i.number.clone().unwrap_or_default()),
        &body,
    )
    .into_response()
}

/// A minimal valid one-page PDF naming the invoice.
pub(crate) async fn invoice_pdf(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
) -> Response {
    let text = {
        let st = inner.lock();
        let Some(i) = st.invoices.get(&id) else {
            return not_found("invoice");
        };
        format!(
            "Invoice {} {} {}",
            i.number.clone().unwrap_or_default(),
            i.status,
            dollars(i.amount_due)
        )
    };
    let text: String = text
        .chars()
        .filter(|c| c.is_ascii() && !"()\\".contains(*c))
        .collect();
    let stream = format!("BT /F1 14 Tf 72 720 Td ({text}) Tj ET");
    let objs = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_owned(),
        format!("<< /Length {} >>\nstream\n{stream}\nendstream", stream.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut pdf = String::from("%PDF-1.4\n");
    let mut offsets = Vec::new();
    for (n, o) in objs.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.push_str(&format!("{} 0 obj\n{o}\nendobj\n", n + 1));
    }
    let xref = pdf.len();
    pdf.push_str(&format!(
        "xref\n0 {}\n0000000000 65535 f \n",
        objs.len() + 1
    ));
    for off in offsets {
        pdf.push_str(&format!("{off:010} 00000 n \n"));
    }
    pdf.push_str(&format!(
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objs.len() + 1
    ));
    ([(header::CONTENT_TYPE, "application/pdf")], pdf).into_response()
}
