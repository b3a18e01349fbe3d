//! E-mail over SMTP (lettre on Tokio): one plain-text message per recipient,
//! one connection per message (no pool to go stale between rare sends).

use std::time::{Duration, Instant};

use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value as Json;

use super::channels::Smtp;
use super::outbox::{Claimed, Outcome};

/// Checks SMTP settings at start-up, so a typo is reported before any mail waits.
pub fn check(smtp: &Smtp) -> Result<(), String> {
    AsyncSmtpTransport::<Tokio1Executor>::from_url(&smtp.url)
        .map_err(|e| format!("TRELLIS_SMTP_URL is not an SMTP URL: {e}"))?;
    smtp.from
        .parse::<Mailbox>()
        .map_err(|e| format!("TRELLIS_SMTP_FROM is not an address: {e}"))?;
    Ok(())
}

/// Sends one message; success is the server accepting it.
pub async fn deliver(smtp: Option<&Smtp>, timeout: Duration, message: &Claimed) -> Outcome {
    let field = |key: &str| message.payload.get(key).and_then(Json::as_str);
    let to = field("to").unwrap_or_default().to_owned();
    let Some(smtp) = smtp else {
        return Outcome::failed(
            to,
            "e-mail is not configured: set TRELLIS_SMTP_URL and TRELLIS_SMTP_FROM",
            false,
        );
    };
    let mail = match build(smtp, &to, field("name"), field("subject"), field("body")) {
        Ok(mail) => mail,
        Err(e) => return Outcome::failed(to, e, true),
    };
    let transport = match AsyncSmtpTransport::<Tokio1Executor>::from_url(&smtp.url) {
        Ok(builder) => builder.timeout(Some(timeout)).build(),
        Err(e) => return Outcome::failed(to, format!("TRELLIS_SMTP_URL: {e}"), false),
    };
    let started = Instant::now();
    let sent = transport.send(mail).await;
    let duration = started.elapsed();
    match sent {
        Ok(response) => Outcome {
            success: true,
            target: to,
            status_code: response.code().to_string().parse().ok(),
            response: Some(response.message().collect::<Vec<_>>().join(" ")),
            duration,
            ..Outcome::default()
        },
        Err(e) => Outcome {
            status_code: e.status().and_then(|c| c.to_string().parse().ok()),
            permanent: e.is_permanent(),
            duration,
            ..Outcome::failed(to, e.to_string(), false)
        },
    }
}

fn build(
    smtp: &Smtp,
    to: &str,
    name: Option<&str>,
    subject: Option<&str>,
    body: Option<&str>,
) -> Result<Message, String> {
    let from: Mailbox = smtp
        .from
        .parse()
        .map_err(|e| format!("TRELLIS_SMTP_FROM: {e}"))?;
    let address = to
        .parse()
        .map_err(|e| format!("`{to}` is not an e-mail address: {e}"))?;
    Message::builder()
        .from(from)
        .to(Mailbox::new(name.map(str::to_owned), address))
        .subject(subject.unwrap_or_default())
        .header(ContentType::TEXT_PLAIN)
        .body(body.unwrap_or_default().to_owned())
        .map_err(|e| format!("the message cannot be built: {e}"))
}
