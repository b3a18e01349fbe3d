//! HTTP deliveries: signed webhooks, WeCom and DingTalk group robots, SMS
//! gateways, and connector pushes (the request rendered when the action ran,
//! sent through [`crate::connect::send`]). `ureq` (blocking, already in the
//! workspace) runs on the blocking pool; redirects are not followed, so a
//! message goes only where configured.

use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value as Json, json};
use sha2::Sha256;
use trellis_engine::model::Channel;

use super::channels::ChannelConfig;
use super::outbox::{Claimed, Outcome};

/// The most of a response read back.
const RESPONSE_LIMIT: u64 = 64 * 1024;

/// The HTTP client of a delivery round.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent("Trellis")
        .build()
        .into()
}

/// HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// The `X-Trellis-Signature` of a webhook body: `sha256=<hex HMAC-SHA256>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let hex: String = hmac_sha256(secret.as_bytes(), body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// DingTalk's signed robot URL: `timestamp` (milliseconds) and `sign`, the
/// Base64 HMAC-SHA256 of "timestamp\nsecret" under the secret, URL-encoded.
pub fn dingtalk_signed_url(url: &str, secret: &str, timestamp_ms: i64) -> String {
    let to_sign = format!("{timestamp_ms}\n{secret}");
    let sign = base64::engine::general_purpose::STANDARD
        .encode(hmac_sha256(secret.as_bytes(), to_sign.as_bytes()));
    let sign = sign
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joiner}timestamp={timestamp_ms}&sign={sign}")
}

/// A URL as logged: without its query, where robot keys and tokens live.
fn shown(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or_default().to_owned()
}

/// The request a message makes on a channel.
struct Request {
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Robots answer 200 with `errcode` ≠ 0 when they refuse a message.
    robot: bool,
}

fn request(config: &ChannelConfig, message: &Claimed) -> Result<Request, String> {
    let text = |key: &str| {
        message
            .payload
            .get(key)
            .and_then(Json::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("the message has no `{key}`"))
    };
    let robot_body = |content: String| {
        json!({"msgtype": "text", "text": {"content": content}})
            .to_string()
            .into_bytes()
    };
    let secret = config.secret.as_deref().filter(|s| !s.is_empty());
    match config.kind {
        Channel::Webhook => {
            let body = json!({
                "id": message.id,
                "topic": message.topic,
                "created_at": message.created_at,
                "data": message.payload,
            })
            .to_string()
            .into_bytes();
            let mut headers = vec![
                ("X-Trellis-Event", message.topic.clone()),
                ("X-Trellis-Delivery", message.id.to_string()),
            ];
            if let Some(secret) = secret {
                headers.push(("X-Trellis-Signature", signature(secret, &body)));
            }
            Ok(Request {
                url: config.url.clone(),
                headers,
                body,
                robot: false,
            })
        }
        Channel::Wecom => Ok(Request {
            url: config.url.clone(),
            headers: Vec::new(),
            body: robot_body(text("content")?),
            robot: true,
        }),
        Channel::Dingtalk => Ok(Request {
            url: match secret {
                Some(secret) => {
                    dingtalk_signed_url(&config.url, secret, chrono::Utc::now().timestamp_millis())
                }
                None => config.url.clone(),
            },
            headers: Vec::new(),
            body: robot_body(text("content")?),
            robot: true,
        }),
        Channel::Sms => {
            let template = config
                .template
                .as_deref()
                .ok_or("the SMS gateway has no body template")?;
            let body = super::render::sms_body(template, &text("phone")?, &text("message")?)?;
            Ok(Request {
                url: config.url.clone(),
                headers: Vec::new(),
                body: body.to_string().into_bytes(),
                robot: false,
            })
        }
        Channel::InApp | Channel::Email => Err(format!("`{}` is not an HTTP channel", config.name)),
    }
}

/// Delivers one message over HTTP: 2xx is success (for robots, with `errcode` 0).
pub async fn deliver(agent: ureq::Agent, config: &ChannelConfig, message: &Claimed) -> Outcome {
    let target = shown(&config.url);
    let request = match request(config, message) {
        Ok(r) => r,
        Err(e) => return Outcome::failed(target, e, true),
    };
    let started = Instant::now();
    let sent = tokio::task::spawn_blocking(move || post(&agent, &request)).await;
    let mut outcome = match sent {
        Ok(outcome) => outcome,
        Err(e) => Outcome::failed(
            String::new(),
            format!("the delivery task failed: {e}"),
            false,
        ),
    };
    outcome.target = target;
    outcome.duration = started.elapsed();
    outcome
}

/// Delivers one connector push: 2xx is success; every other answer, and no
/// answer, is retried. A message whose request cannot be read fails at once.
pub async fn deliver_push(message: &Claimed, settings: &super::Channels) -> Outcome {
    let outgoing: crate::connect::Outgoing = match serde_json::from_value(message.payload.clone()) {
        Ok(o) => o,
        Err(e) => {
            return Outcome::failed(
                message.target.clone(),
                format!("the message is not a connector request: {e}"),
                true,
            );
        }
    };
    // The delivery's id lets the other system recognise a repeated delivery.
    let headers = vec![
        ("X-Trellis-Delivery".to_owned(), message.id.to_string()),
        ("X-Trellis-Event".to_owned(), message.topic.clone()),
    ];
    match crate::connect::send(&outgoing, &settings.environment, settings.timeout, headers).await {
        Err(failure) => {
            let url = Some(failure.url()).filter(|u| !u.is_empty());
            Outcome::failed(
                url.unwrap_or_else(|| message.target.clone()),
                failure.to_string(),
                false,
            )
        }
        Ok(reply) => Outcome {
            success: reply.is_success(),
            status_code: Some(i64::from(reply.status)),
            error: (!reply.is_success()).then(|| format!("HTTP {}", reply.status)),
            target: reply.url,
            response: Some(reply.body).filter(|b| !b.is_empty()),
            duration: reply.duration,
            permanent: false,
        },
    }
}

fn post(agent: &ureq::Agent, request: &Request) -> Outcome {
    let mut call = agent
        .post(&request.url)
        .header("Content-Type", "application/json");
    for (name, value) in &request.headers {
        call = call.header(*name, value);
    }
    let mut response = match call.send(&request.body[..]) {
        Ok(r) => r,
        Err(e) => return Outcome::failed(String::new(), e.to_string(), false),
    };
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(RESPONSE_LIMIT)
        .read_to_vec()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut outcome = Outcome {
        status_code: Some(i64::from(status.as_u16())),
        response: Some(body.clone()).filter(|b| !b.is_empty()),
        ..Outcome::default()
    };
    if !status.is_success() {
        outcome.error = Some(format!("HTTP {status}"));
    } else if request.robot {
        let reply: Json = serde_json::from_str(&body).unwrap_or(Json::Null);
        match reply.get("errcode").and_then(Json::as_i64) {
            Some(0) => outcome.success = true,
            Some(code) => {
                let why = reply.get("errmsg").and_then(Json::as_str).unwrap_or("");
                outcome.error = Some(format!("the robot refused the message: {code} {why}"));
            }
            None => outcome.error = Some("the robot's reply has no errcode".into()),
        }
    } else {
        outcome.success = true;
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hex_and_base64_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let url = dingtalk_signed_url(
            "https://oapi.dingtalk.com/robot/send?access_token=t",
            "SEC1",
            1_700_000_000_000,
        );
        let (base, query) = url.split_once("&timestamp=").expect("signed");
        assert_eq!(base, "https://oapi.dingtalk.com/robot/send?access_token=t");
        let (timestamp, sign) = query.split_once("&sign=").expect("a sign");
        assert_eq!(timestamp, "1700000000000");
        let expected = base64::engine::general_purpose::STANDARD
            .encode(hmac_sha256(b"SEC1", b"1700000000000\nSEC1"));
        assert_eq!(
            sign.replace("%2B", "+")
                .replace("%2F", "/")
                .replace("%3D", "="),
            expected
        );
        assert!(!sign.contains('+') && !sign.contains('/') && !sign.contains('='));
    }

    #[test]
    fn logged_urls_lose_their_query() {
        assert_eq!(
            shown("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=SECRET"),
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
        );
    }
}
