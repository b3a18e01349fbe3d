//! Notifications and the transactional outbox.
//!
//! Code that changes data tells people and systems about it **in the same
//! transaction**: [`notify`] writes in-app notifications and outbox messages
//! for the other channels, [`publish`] writes integration events for the
//! webhooks subscribed to a topic. A rolled-back write therefore tells nobody,
//! and a committed one is never forgotten: the [`Dispatcher`] (or
//! [`deliver_due`]) delivers outbox rows after commit, retrying with backoff.
//!
//! - `render` — message templates (minijinja) and the two languages of a label;
//! - `recipients` — who a [`Recipient`] is, as accounts with their addresses;
//! - [`inbox`] — the in-app notifications of a user;
//! - [`outbox`] — writing, claiming, completing and re-pushing outbox messages;
//! - [`channels`] — delivery settings ([`Channels`]) and the configured channels;
//! - `http`, `email` — the senders (`http` also delivers connector pushes,
//!   written by [`crate::connect`]); `dispatch` — the background delivery loop.
//!
//! **Languages:** in-app rows keep the English text in `subject`/`message` and
//! the Chinese one, when the label has it, in `subject_zh`/`message_zh`; the API
//! returns them label-shaped (a string, or `{en, zh}`). Outbound channels carry
//! one text: the English, followed on a new line by the Chinese when there is
//! one that differs.

pub mod channels;
mod dispatch;
mod email;
mod http;
pub mod inbox;
pub mod outbox;
mod recipients;
pub(crate) mod render;

use serde_json::{Map, Value as Json, json};
use trellis_engine::model::{Channel, Label, Recipient};

use crate::store::{Dialect, StoreError};

pub use channels::{ChannelConfig, Channels, Retry, Smtp};
pub use dispatch::{Dispatcher, deliver_due, deliver_due_at};
/// The HTTP client of deliveries, also used by connectors.
pub(crate) use http::agent;

/// In-app notifications, one row per recipient.
pub const NOTIFICATIONS: &str = "trellis_notifications";
/// Messages waiting to leave, written in the sender's transaction.
pub const OUTBOX: &str = "trellis_outbox";
/// Every delivery attempt of an outbox message.
pub const ATTEMPTS: &str = "trellis_outbox_attempts";
/// Configured webhooks, robots and SMS gateways.
pub const CHANNELS: &str = "trellis_channels";

/// The topic of notifications sent to webhooks, and of every outbox row
/// [`notify`] writes.
pub const NOTIFICATION_TOPIC: &str = "notification";

/// What to tell whom, as alerts and workflow effects declare it.
#[derive(Debug, Clone)]
pub struct Notification {
    pub recipients: Vec<Recipient>,
    /// Empty means in-app only.
    pub channels: Vec<Channel>,
    pub subject: Option<Label>,
    /// A template: `{{ record.<field> }}`, `{{ app }}`, `{{ entity }}`, `{{ id }}`.
    pub message: Label,
}

/// The record a notification is about.
#[derive(Debug, Clone, Copy)]
pub struct About<'a> {
    pub app: &'a str,
    pub entity: &'a str,
    pub record_id: i64,
    /// The record's field values, as the REST API returns them.
    pub record: &'a Map<String, Json>,
}

/// Resolves the recipients, renders subject and message, and writes on `txn`:
/// an in-app row per recipient for `in_app` (the default when no channel is
/// named), an outbox row per recipient with an address for `email` and `sms`
/// (per configured SMS gateway), and one per enabled channel of the kind for
/// `wecom`, `dingtalk` and `webhook` (webhooks subscribed to `notification`).
/// Returns how many distinct users were recipients.
///
/// Roles and user fields resolve to enabled accounts only. A person with no
/// e-mail address (or `phone` attribute) gets no e-mail (or text message); a
/// template that fails to render is sent as written, so a notification never
/// aborts the write it belongs to.
pub async fn notify(
    txn: &sea_orm::DatabaseTransaction,
    dialect: Dialect,
    n: &Notification,
    about: &About<'_>,
) -> Result<usize, StoreError> {
    let people = recipients::resolve(txn, dialect, &n.recipients, about.record).await?;
    let context = render::context(about);
    let message = render::label(&n.message, &context);
    let subject = n.subject.as_ref().map(|s| render::label(s, &context));
    let named: &[Channel] = if n.channels.is_empty() {
        &[Channel::InApp]
    } else {
        &n.channels
    };
    let mut kinds: Vec<Channel> = Vec::with_capacity(named.len());
    for kind in named {
        if !kinds.contains(kind) {
            kinds.push(*kind);
        }
    }
    let now = chrono::Utc::now();
    let text = message.joined();
    for kind in kinds {
        match kind {
            Channel::InApp => {
                inbox::insert(
                    txn,
                    dialect,
                    &people,
                    subject.as_ref(),
                    &message,
                    about,
                    now,
                )
                .await?;
            }
            Channel::Email => {
                let subject = subject
                    .as_ref()
                    .map(render::Text::joined)
                    .unwrap_or_else(|| render::first_line(&message.en));
                for person in &people {
                    let Some(to) = &person.email else { continue };
                    let payload = json!({
                        "to": to,
                        "name": person.display_name.as_deref().unwrap_or(&person.username),
                        "subject": subject,
                        "body": text,
                    });
                    outbox::enqueue(
                        txn,
                        dialect,
                        Channel::Email,
                        NOTIFICATION_TOPIC,
                        channels::EMAIL_TARGET,
                        &payload,
                        now,
                    )
                    .await?;
                }
            }
            Channel::Sms => {
                for gateway in channels::enabled(txn, dialect, Channel::Sms).await? {
                    for person in &people {
                        let Some(phone) = &person.phone else { continue };
                        let payload = json!({"phone": phone, "message": text});
                        outbox::enqueue(
                            txn,
                            dialect,
                            Channel::Sms,
                            NOTIFICATION_TOPIC,
                            &gateway.name,
                            &payload,
                            now,
                        )
                        .await?;
                    }
                }
            }
            Channel::Wecom | Channel::Dingtalk => {
                let content = match &subject {
                    Some(s) => format!("{}\n{text}", s.joined()),
                    None => text.clone(),
                };
                for robot in channels::enabled(txn, dialect, kind).await? {
                    outbox::enqueue(
                        txn,
                        dialect,
                        kind,
                        NOTIFICATION_TOPIC,
                        &robot.name,
                        &json!({"content": content}),
                        now,
                    )
                    .await?;
                }
            }
            Channel::Webhook => {
                let data = json!({
                    "app": about.app,
                    "entity": about.entity,
                    "record_id": about.record_id,
                    "subject": subject.as_ref().map(render::Text::to_json),
                    "message": message.to_json(),
                    "recipients": people.iter().map(|p| &p.username).collect::<Vec<_>>(),
                });
                publish_at(txn, dialect, NOTIFICATION_TOPIC, &data, now).await?;
            }
        }
    }
    Ok(people.len())
}

/// Writes an integration event (a topic like `crm.customer.approved` and its
/// JSON payload) on `txn`: one outbox row per enabled webhook subscribed to
/// the topic. With no subscriber, nothing is written.
pub async fn publish(
    txn: &sea_orm::DatabaseTransaction,
    dialect: Dialect,
    topic: &str,
    payload: &Json,
) -> Result<(), StoreError> {
    publish_at(txn, dialect, topic, payload, chrono::Utc::now()).await
}

async fn publish_at(
    txn: &sea_orm::DatabaseTransaction,
    dialect: Dialect,
    topic: &str,
    payload: &Json,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    for hook in channels::enabled(txn, dialect, Channel::Webhook).await? {
        if hook.subscribes_to(topic) {
            outbox::enqueue(
                txn,
                dialect,
                Channel::Webhook,
                topic,
                &hook.name,
                payload,
                now,
            )
            .await?;
        }
    }
    Ok(())
}

/// The snake_case name of a channel kind, as stored.
fn kind_name(kind: Channel) -> &'static str {
    match kind {
        Channel::InApp => "in_app",
        Channel::Email => "email",
        Channel::Sms => "sms",
        Channel::Wecom => "wecom",
        Channel::Dingtalk => "dingtalk",
        Channel::Webhook => "webhook",
    }
}

fn kind_of(name: &str) -> Option<Channel> {
    serde_json::from_value(Json::String(name.to_owned())).ok()
}

/// Text cut to at most `max` characters, for logs.
fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
