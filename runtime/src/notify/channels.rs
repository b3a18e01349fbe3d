//! Where messages go: the delivery settings of a node ([`Channels`]: SMTP from
//! the environment, retries, timeouts), and the webhooks, robots and SMS
//! gateways administrators configure in `trellis_channels` ([`ChannelConfig`]).
//! Channel rows are read at delivery time, so a changed URL or secret applies
//! to messages still waiting.

use std::collections::HashMap;
use std::time::Duration;

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use trellis_engine::model::Channel;

use super::{CHANNELS, kind_name, kind_of};
use crate::record::value::{from_row, to_sql};
use crate::store::{ColumnKind, Dialect, Store, StoreError};

/// The outbox target of e-mail, which goes through the node's SMTP server.
pub const EMAIL_TARGET: &str = "email";

/// The SMTP server of e-mail (`TRELLIS_SMTP_URL`, `TRELLIS_SMTP_FROM`).
#[derive(Debug, Clone)]
pub struct Smtp {
    /// `smtp://host:port`, `smtp://user:pass@host:587?tls=required`, `smtps://host`.
    pub url: String,
    /// The sender, like `Trellis <trellis@example.com>`.
    pub from: String,
}

/// How failed deliveries are retried: after `base`, then twice as long each
/// time up to `cap`; after `max_attempts` failures in a row the message is
/// `failed` until an administrator re-pushes it.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub base: Duration,
    pub cap: Duration,
    pub max_attempts: u32,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            base: Duration::from_secs(30),
            cap: Duration::from_secs(3600),
            max_attempts: 10,
        }
    }
}

impl Retry {
    /// The wait after the `failures`-th failure in a row (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        let doubled = 2_u32
            .checked_pow(failures.saturating_sub(1))
            .and_then(|factor| self.base.checked_mul(factor))
            .unwrap_or(self.cap);
        doubled.min(self.cap)
    }
}

/// A node's delivery settings.
#[derive(Debug, Clone)]
pub struct Channels {
    /// Without it, e-mail fails (and is retried) until it is configured.
    pub smtp: Option<Smtp>,
    pub retry: Retry,
    /// The longest one delivery may take.
    pub timeout: Duration,
    /// How long a claimed message is reserved for this node. Longer than
    /// `timeout`, so a message is never handed to a second node while the
    /// first is still delivering it.
    pub lease: Duration,
    /// Messages claimed (and delivered concurrently) per round.
    pub batch: u64,
    /// How often the dispatcher looks for due messages.
    pub poll: Duration,
    /// Base URLs and credentials of connectors (`TRELLIS_CONNECTOR_<NAME>_URL`,
    /// the variables their `auth` names), read when a push is delivered.
    pub environment: crate::connect::Environment,
}

impl Default for Channels {
    fn default() -> Channels {
        Channels {
            smtp: None,
            retry: Retry::default(),
            timeout: Duration::from_secs(30),
            lease: Duration::from_secs(300),
            batch: 20,
            poll: Duration::from_secs(2),
            environment: crate::connect::Environment::process(),
        }
    }
}

impl Channels {
    /// The defaults, with SMTP from `TRELLIS_SMTP_URL` and `TRELLIS_SMTP_FROM`.
    pub fn from_env() -> Result<Channels, String> {
        let url = std::env::var("TRELLIS_SMTP_URL")
            .ok()
            .filter(|u| !u.is_empty());
        let from = std::env::var("TRELLIS_SMTP_FROM")
            .ok()
            .filter(|f| !f.is_empty());
        let smtp = match (url, from) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(
                    "TRELLIS_SMTP_URL is set but TRELLIS_SMTP_FROM (the sender) is not".into(),
                );
            }
            (Some(url), Some(from)) => {
                let smtp = Smtp { url, from };
                super::email::check(&smtp)?;
                Some(smtp)
            }
        };
        Ok(Channels {
            smtp,
            ..Channels::default()
        })
    }
}

/// A configured webhook, robot or SMS gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelConfig {
    pub name: String,
    pub kind: Channel,
    pub url: String,
    /// The webhook signing key, or DingTalk's signing secret; never shown.
    pub secret: Option<String>,
    /// SMS: the JSON body, with `{{ phone }}` and `{{ message }}`.
    pub template: Option<String>,
    /// Webhooks: the topics delivered (`*`, `crm.*`, `crm.customer.approved`).
    pub topics: Vec<String>,
    pub enabled: bool,
}

impl ChannelConfig {
    /// Whether a webhook receives events of `topic`: `*` matches every topic,
    /// `a.*` every topic under `a.`, anything else itself.
    pub fn subscribes_to(&self, topic: &str) -> bool {
        self.topics.iter().any(|pattern| {
            pattern == "*"
                || pattern == topic
                || pattern
                    .strip_suffix('*')
                    .is_some_and(|prefix| prefix.ends_with('.') && topic.starts_with(prefix))
        })
    }

    /// As administrators see it: whether there is a secret, never the secret.
    pub fn to_json(&self) -> Json {
        json!({
            "name": self.name,
            "kind": kind_name(self.kind),
            "url": self.url,
            "has_secret": self.secret.is_some(),
            "template": self.template,
            "topics": self.topics,
            "enabled": self.enabled,
        })
    }
}

/// A channel as an administrator writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelChange {
    pub kind: Channel,
    pub url: String,
    /// Absent keeps the stored secret; empty removes it.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub topics: Vec<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Why a channel change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for ChannelError {
    fn from(e: sea_orm::DbErr) -> Self {
        ChannelError::Store(e.into())
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ChannelError {
    ChannelError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

const COLUMNS: [&str; 7] = [
    "name", "kind", "url", "secret", "template", "topics", "enabled",
];

fn select() -> SelectStatement {
    let mut q = Query::select();
    q.columns(COLUMNS.map(Alias::new))
        .from(Alias::new(CHANNELS))
        .order_by(Alias::new("name"), Order::Asc);
    q
}

fn from_query_row(
    row: &sea_orm::QueryResult,
    dialect: Dialect,
) -> Result<Option<ChannelConfig>, StoreError> {
    let kind: String = row.try_get("", "kind")?;
    let Some(kind) = kind_of(&kind) else {
        return Ok(None);
    };
    let topics = match from_row(row, "topics", ColumnKind::Json, dialect)? {
        Json::Array(items) => items
            .into_iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    Ok(Some(ChannelConfig {
        name: row.try_get("", "name")?,
        kind,
        url: row.try_get("", "url")?,
        secret: row.try_get("", "secret")?,
        template: row.try_get("", "template")?,
        topics,
        enabled: row.try_get("", "enabled")?,
    }))
}

async fn configs(
    conn: &impl ConnectionTrait,
    dialect: Dialect,
    q: &SelectStatement,
) -> Result<Vec<ChannelConfig>, StoreError> {
    let mut out = Vec::new();
    for row in conn.query_all(q).await? {
        out.extend(from_query_row(&row, dialect)?);
    }
    Ok(out)
}

/// The enabled channels of a kind, read in the sender's transaction.
pub(super) async fn enabled(
    txn: &DatabaseTransaction,
    dialect: Dialect,
    kind: Channel,
) -> Result<Vec<ChannelConfig>, StoreError> {
    let mut q = select();
    q.and_where(Expr::col(Alias::new("kind")).eq(kind_name(kind)))
        .and_where(Expr::col(Alias::new("enabled")).eq(true));
    configs(txn, dialect, &q).await
}

/// The channels of the given names (enabled or not), by name.
pub(super) async fn by_names(
    store: &Store,
    names: &[String],
) -> Result<HashMap<String, ChannelConfig>, StoreError> {
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let mut q = select();
    q.and_where(Expr::col(Alias::new("name")).is_in(names.iter().map(String::as_str)));
    Ok(configs(store.connection(), store.dialect(), &q)
        .await?
        .into_iter()
        .map(|c| (c.name.clone(), c))
        .collect())
}

/// Every configured channel, by name.
pub async fn list_channels(store: &Store) -> Result<Vec<ChannelConfig>, StoreError> {
    configs(store.connection(), store.dialect(), &select()).await
}

/// One configured channel.
pub async fn get_channel(store: &Store, name: &str) -> Result<Option<ChannelConfig>, StoreError> {
    Ok(by_names(store, &[name.to_owned()]).await?.remove(name))
}

/// Checks a change to the channel `name`.
fn validate(name: &str, change: &ChannelChange) -> Result<(), ChannelError> {
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !name_ok {
        return Err(invalid("name", "1 to 64 letters, digits, `_`, `-` or `.`"));
    }
    if name == EMAIL_TARGET {
        return Err(invalid(
            "name",
            "`email` is the SMTP server's (TRELLIS_SMTP_URL)",
        ));
    }
    if matches!(change.kind, Channel::InApp | Channel::Email) {
        return Err(invalid(
            "kind",
            "one of webhook, wecom, dingtalk, sms (e-mail is configured by TRELLIS_SMTP_URL)",
        ));
    }
    let url = change.url.trim();
    if !(url.starts_with("https://") || url.starts_with("http://"))
        || url.chars().any(char::is_whitespace)
    {
        return Err(invalid("url", "an http:// or https:// URL"));
    }
    match change.kind {
        Channel::Sms => {
            let template = change.template.as_deref().ok_or_else(|| {
                invalid(
                    "template",
                    "an SMS gateway needs a JSON body template with {{ phone }} and {{ message }}",
                )
            })?;
            super::render::sms_body(template, "+8613800000000", "a \"test\"\nmessage")
                .map_err(|e| invalid("template", e))?;
        }
        _ if change.template.is_some() => {
            return Err(invalid(
                "template",
                "only SMS gateways have a body template",
            ));
        }
        _ => {}
    }
    match change.kind {
        Channel::Webhook if change.topics.is_empty() => Err(invalid(
            "topics",
            "a webhook needs at least one topic (`*` for every one)",
        )),
        Channel::Webhook => match change
            .topics
            .iter()
            .find(|t| t.is_empty() || t.chars().any(char::is_whitespace))
        {
            Some(bad) => Err(invalid("topics", format!("`{bad}` is not a topic"))),
            None => Ok(()),
        },
        _ if !change.topics.is_empty() => {
            Err(invalid("topics", "only webhooks subscribe to topics"))
        }
        _ => Ok(()),
    }
}

/// Creates or replaces the channel `name`; true when it was created.
pub async fn put_channel(
    store: &Store,
    name: &str,
    change: ChannelChange,
) -> Result<bool, ChannelError> {
    validate(name, &change)?;
    let dialect = store.dialect();
    let txn = store.begin_write().await?;
    let mut existing = Query::select();
    existing
        .column(Alias::new("id"))
        .from(Alias::new(CHANNELS))
        .and_where(Expr::col(Alias::new("name")).eq(name));
    let id: Option<i64> = match txn.query_one(&existing).await? {
        Some(row) => Some(row.try_get_by_index(0)?),
        None => None,
    };
    let topics = to_sql(&json!(change.topics), ColumnKind::Json, dialect);
    let mut values: Vec<(&str, sea_orm::Value)> = vec![
        ("kind", kind_name(change.kind).into()),
        ("url", change.url.trim().to_owned().into()),
        ("template", change.template.clone().into()),
        ("topics", topics),
        ("enabled", change.enabled.unwrap_or(true).into()),
        ("updated_at", dialect.time(chrono::Utc::now())),
    ];
    match &change.secret {
        Some(secret) if secret.is_empty() => values.push(("secret", Option::<String>::None.into())),
        Some(secret) => values.push(("secret", secret.clone().into())),
        None => {}
    }
    match id {
        Some(id) => {
            let mut update = Query::update();
            update
                .table(Alias::new(CHANNELS))
                .values(values.into_iter().map(|(c, v)| (Alias::new(c), v.into())))
                .and_where(Expr::col(Alias::new("id")).eq(id));
            txn.execute(&update).await?;
        }
        None => {
            values.push(("name", name.to_owned().into()));
            let mut insert = Query::insert();
            insert
                .into_table(Alias::new(CHANNELS))
                .columns(values.iter().map(|(c, _)| Alias::new(*c)))
                .values_panic(values.into_iter().map(|(_, v)| v.into()));
            txn.execute(&insert).await?;
        }
    }
    txn.commit().await?;
    Ok(id.is_none())
}

/// Removes a channel; false when there was none. Its waiting messages fail
/// at their next attempt.
pub async fn delete_channel(store: &Store, name: &str) -> Result<bool, StoreError> {
    let mut delete = Query::delete();
    delete
        .from_table(Alias::new(CHANNELS))
        .and_where(Expr::col(Alias::new("name")).eq(name));
    Ok(store.connection().execute(&delete).await?.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let retry = Retry {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(60),
            max_attempts: 5,
        };
        let delays: Vec<u64> = (1..=6).map(|n| retry.delay(n).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 60, 60, 60]);
        assert_eq!(retry.delay(200).as_secs(), 60, "no overflow");
    }

    #[test]
    fn topics_match_exactly_by_prefix_or_all() {
        let hook = |topics: &[&str]| ChannelConfig {
            name: "h".into(),
            kind: Channel::Webhook,
            url: "http://x".into(),
            secret: None,
            template: None,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            enabled: true,
        };
        assert!(hook(&["*"]).subscribes_to("crm.customer.approved"));
        assert!(hook(&["crm.*"]).subscribes_to("crm.customer.approved"));
        assert!(!hook(&["crm.*"]).subscribes_to("crmx.customer"));
        assert!(hook(&["crm.customer.approved"]).subscribes_to("crm.customer.approved"));
        assert!(!hook(&["crm.customer"]).subscribes_to("crm.customer.approved"));
        assert!(!hook(&[]).subscribes_to("notification"));
    }

    #[test]
    fn changes_are_checked() {
        let change = |kind, url: &str, template: Option<&str>, topics: &[&str]| ChannelChange {
            kind,
            url: url.into(),
            secret: None,
            template: template.map(str::to_owned),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            enabled: None,
        };
        let ok = change(Channel::Webhook, "https://h.example/x", None, &["*"]);
        assert!(validate("erp", &ok).is_ok());
        assert!(validate("bad name", &ok).is_err());
        assert!(validate("email", &ok).is_err());
        assert!(validate("h", &change(Channel::Webhook, "ftp://x", None, &["*"])).is_err());
        assert!(validate("h", &change(Channel::Webhook, "http://x", None, &[])).is_err());
        assert!(validate("h", &change(Channel::Email, "http://x", None, &[])).is_err());
        assert!(validate("s", &change(Channel::Sms, "http://x", None, &[])).is_err());
        assert!(
            validate(
                "s",
                &change(Channel::Sms, "http://x", Some("{{ phone"), &[])
            )
            .is_err()
        );
        assert!(
            validate(
                "s",
                &change(
                    Channel::Sms,
                    "http://x",
                    Some(r#"{"to":"{{ phone }}","text":"{{ message }}"}"#),
                    &[]
                )
            )
            .is_ok()
        );
        assert!(validate("w", &change(Channel::Wecom, "http://x", None, &["*"])).is_err());
    }
}
