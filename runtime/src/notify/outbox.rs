//! The outbox table: messages written in the sender's transaction, claimed by
//! one dispatcher at a time, completed with their attempt in one transaction,
//! and listed and re-pushed by administrators.
//!
//! A message is `pending` until it is `delivered`, or `failed` after too many
//! failures in a row. Claiming leases it: `leased_by` names the claim and
//! `leased_until` keeps other nodes off it until then (rows are picked with
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one writer). Completion
//! only changes a row still leased by the same claim, and marks it delivered in
//! the transaction that logs the successful attempt: a message is never
//! delivered again once its delivery was recorded.

use std::time::Duration;

use sea_orm::sea_query::{
    Alias, Condition, Expr, ExprTrait, Func, LockBehavior, LockType, Order, Query, SelectStatement,
};
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use serde_json::{Value as Json, json};
use trellis_engine::model::Channel;

use super::channels::{Channels, Retry};
use super::{ATTEMPTS, OUTBOX, excerpt, kind_name, kind_of};
use crate::record::value::from_row;
use crate::store::{ColumnKind, Dialect, Store, StoreError};

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

/// How much of an error or a response the log keeps.
const EXCERPT: usize = 500;

/// Writes one message on the sender's transaction, due at once.
pub(super) async fn enqueue(
    txn: &DatabaseTransaction,
    dialect: Dialect,
    channel: Channel,
    topic: &str,
    target: &str,
    payload: &Json,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    enqueue_kind(
        txn,
        dialect,
        kind_name(channel),
        topic,
        target,
        payload,
        now,
    )
    .await
}

/// [`enqueue`] for a kind of message that is no notification channel
/// (`connector`: the pushes of [`crate::connect`]).
pub(crate) async fn enqueue_kind(
    txn: &DatabaseTransaction,
    dialect: Dialect,
    kind: &str,
    topic: &str,
    target: &str,
    payload: &Json,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    let mut insert = Query::insert();
    insert
        .into_table(Alias::new(OUTBOX))
        .columns(
            [
                "created_at",
                "channel",
                "topic",
                "target",
                "payload",
                "status",
                "attempts",
                "attempts_before_retry",
                "next_attempt_at",
            ]
            .map(Alias::new),
        )
        .values_panic([
            dialect.time(now).into(),
            kind.into(),
            topic.into(),
            target.into(),
            payload.to_string().into(),
            PENDING.into(),
            0_i64.into(),
            0_i64.into(),
            dialect.time(now).into(),
        ]);
    txn.execute(&insert).await?;
    Ok(())
}

/// A message claimed for delivery.
#[derive(Debug, Clone)]
pub(super) struct Claimed {
    pub id: i64,
    pub channel: Option<Channel>,
    /// The stored kind: a channel's name, or `connector`.
    pub kind: String,
    pub topic: String,
    pub target: String,
    pub payload: Json,
    pub created_at: Json,
    /// Attempts so far, and how many of them came before the last re-push.
    pub attempts: i64,
    pub attempts_before_retry: i64,
    /// The claim's own name, which completion checks.
    pub lease: String,
}

/// What one delivery attempt did.
#[derive(Debug, Clone, Default)]
pub(super) struct Outcome {
    pub success: bool,
    /// Where it went: the URL without its query (robot keys live there), or the address.
    pub target: String,
    /// The HTTP status, or the SMTP reply code.
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub response: Option<String>,
    pub duration: Duration,
    /// Retrying cannot help (no such channel, no address): fail at once.
    pub permanent: bool,
}

impl Outcome {
    pub fn failed(target: impl Into<String>, error: impl Into<String>, permanent: bool) -> Outcome {
        Outcome {
            target: target.into(),
            error: Some(error.into()),
            permanent,
            ..Outcome::default()
        }
    }
}

fn due(dialect: Dialect, now: chrono::DateTime<chrono::Utc>) -> Condition {
    Condition::all()
        .add(Expr::col(Alias::new("status")).eq(PENDING))
        .add(Expr::col(Alias::new("next_attempt_at")).lte(dialect.time(now)))
        .add(
            Condition::any()
                .add(Expr::col(Alias::new("leased_until")).is_null())
                .add(Expr::col(Alias::new("leased_until")).lte(dialect.time(now))),
        )
}

/// Leases up to `channels.batch` due messages to the claim `lease`.
pub(super) async fn claim(
    store: &Store,
    channels: &Channels,
    now: chrono::DateTime<chrono::Utc>,
    lease: &str,
) -> Result<Vec<Claimed>, StoreError> {
    let dialect = store.dialect();
    // A plain read first: most rounds find nothing, and need no write lock.
    let mut any = Query::select();
    any.column(Alias::new("id"))
        .from(Alias::new(OUTBOX))
        .cond_where(due(dialect, now))
        .limit(1);
    if store.connection().query_one(&any).await?.is_none() {
        return Ok(Vec::new());
    }
    let txn = store.begin_write().await?;
    let mut q = Query::select();
    q.columns(
        [
            "id",
            "channel",
            "topic",
            "target",
            "payload",
            "created_at",
            "attempts",
            "attempts_before_retry",
        ]
        .map(Alias::new),
    )
    .from(Alias::new(OUTBOX))
    .cond_where(due(dialect, now))
    .order_by(Alias::new("next_attempt_at"), Order::Asc)
    .order_by(Alias::new("id"), Order::Asc)
    .limit(Ord::max(channels.batch, 1))
    // SQLite ignores the clause: its write transaction already excludes other claimers.
    .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    let mut claimed = Vec::new();
    for row in txn.query_all(&q).await? {
        let channel: Option<String> = row.try_get("", "channel")?;
        let payload: String = row.try_get("", "payload")?;
        claimed.push(Claimed {
            id: row.try_get("", "id")?,
            channel: channel.as_deref().and_then(kind_of),
            kind: channel.unwrap_or_default(),
            topic: row.try_get("", "topic")?,
            target: row
                .try_get::<Option<String>>("", "target")?
                .unwrap_or_default(),
            payload: serde_json::from_str(&payload).unwrap_or(Json::String(payload)),
            created_at: from_row(&row, "created_at", ColumnKind::DateTime, dialect)?,
            attempts: row.try_get::<Option<i64>>("", "attempts")?.unwrap_or(0),
            attempts_before_retry: row
                .try_get::<Option<i64>>("", "attempts_before_retry")?
                .unwrap_or(0),
            lease: lease.to_owned(),
        });
    }
    if !claimed.is_empty() {
        let until = now
            + chrono::Duration::from_std(channels.lease.max(channels.timeout * 2))
                .unwrap_or(chrono::Duration::minutes(5));
        let mut update = Query::update();
        update
            .table(Alias::new(OUTBOX))
            .value(Alias::new("leased_by"), lease)
            .value(Alias::new("leased_until"), dialect.time(until))
            .and_where(Expr::col(Alias::new("id")).is_in(claimed.iter().map(|c| c.id)));
        txn.execute(&update).await?;
    }
    txn.commit().await?;
    Ok(claimed)
}

/// Records an attempt and its effect on the message, in one transaction:
/// delivered, due again after the backoff, or failed. Returns whether the
/// message was delivered.
pub(super) async fn complete(
    store: &Store,
    message: &Claimed,
    outcome: &Outcome,
    retry: &Retry,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, StoreError> {
    let dialect = store.dialect();
    let wall = chrono::Utc::now();
    let attempt = message.attempts + 1;
    let failures = u32::try_from(attempt - message.attempts_before_retry).unwrap_or(u32::MAX);
    let error = outcome.error.as_deref().map(|e| excerpt(e, EXCERPT));
    let mut update = Query::update();
    update
        .table(Alias::new(OUTBOX))
        .value(Alias::new("attempts"), attempt)
        .value(Alias::new("last_attempt_at"), dialect.time(wall))
        .value(Alias::new("leased_by"), Option::<String>::None)
        .value(Alias::new("leased_until"), null_time(dialect))
        .and_where(Expr::col(Alias::new("id")).eq(message.id))
        .and_where(Expr::col(Alias::new("leased_by")).eq(message.lease.as_str()))
        .and_where(Expr::col(Alias::new("status")).eq(PENDING));
    if outcome.success {
        update
            .value(Alias::new("status"), DELIVERED)
            .value(Alias::new("delivered_at"), dialect.time(wall))
            .value(Alias::new("next_attempt_at"), null_time(dialect))
            .value(Alias::new("last_error"), Option::<String>::None);
    } else if outcome.permanent || failures >= retry.max_attempts {
        update
            .value(Alias::new("status"), FAILED)
            .value(Alias::new("next_attempt_at"), null_time(dialect))
            .value(Alias::new("last_error"), error.clone());
    } else {
        let wait =
            chrono::Duration::from_std(retry.delay(failures)).unwrap_or(chrono::Duration::hours(1));
        update
            .value(Alias::new("next_attempt_at"), dialect.time(now + wait))
            .value(Alias::new("last_error"), error.clone());
    }
    let mut log = Query::insert();
    log.into_table(Alias::new(ATTEMPTS))
        .columns(
            [
                "outbox_id",
                "attempt",
                "at",
                "target",
                "success",
                "status_code",
                "error",
                "response",
                "duration_us",
            ]
            .map(Alias::new),
        )
        .values_panic([
            message.id.into(),
            attempt.into(),
            dialect.time(wall).into(),
            outcome.target.clone().into(),
            outcome.success.into(),
            sea_orm::Value::BigInt(outcome.status_code).into(),
            error.into(),
            outcome
                .response
                .as_deref()
                .map(|r| excerpt(r, EXCERPT))
                .into(),
            i64::try_from(outcome.duration.as_micros())
                .unwrap_or(i64::MAX)
                .into(),
        ]);
    let txn = store.begin_write().await?;
    let changed = txn.execute(&update).await?.rows_affected();
    txn.execute(&log).await?;
    txn.commit().await?;
    if changed == 0 {
        // The lease ran out and another claim took the message: its outcome
        // decides; this attempt stays in the log.
        tracing::warn!(
            outbox_id = message.id,
            "an outbox message's lease ran out during its delivery"
        );
        return Ok(false);
    }
    Ok(outcome.success)
}

fn null_time(dialect: Dialect) -> sea_orm::Value {
    match dialect {
        Dialect::Sqlite => sea_orm::Value::String(None),
        Dialect::Postgres => sea_orm::Value::ChronoDateTimeUtc(None),
    }
}

/// What administrators look for in the push log.
#[derive(Debug, Clone, Default)]
pub struct OutboxQuery {
    pub status: Option<String>,
    pub topic: Option<String>,
    pub target: Option<String>,
    pub limit: u64,
    pub offset: u64,
}

const MESSAGE_COLUMNS: &[(&str, ColumnKind)] = &[
    ("id", ColumnKind::Id),
    ("created_at", ColumnKind::DateTime),
    ("channel", ColumnKind::Text),
    ("topic", ColumnKind::Text),
    ("target", ColumnKind::Text),
    ("status", ColumnKind::Text),
    ("attempts", ColumnKind::Integer),
    ("last_error", ColumnKind::Text),
    ("last_attempt_at", ColumnKind::DateTime),
    ("next_attempt_at", ColumnKind::DateTime),
    ("delivered_at", ColumnKind::DateTime),
    ("retried_at", ColumnKind::DateTime),
    ("retried_by", ColumnKind::Integer),
];

const ATTEMPT_COLUMNS: &[(&str, ColumnKind)] = &[
    ("attempt", ColumnKind::Integer),
    ("at", ColumnKind::DateTime),
    ("target", ColumnKind::Text),
    ("success", ColumnKind::Boolean),
    ("status_code", ColumnKind::Integer),
    ("error", ColumnKind::Text),
    ("response", ColumnKind::Text),
    ("duration_us", ColumnKind::Integer),
];

fn filtered(query: &OutboxQuery) -> SelectStatement {
    let mut q = Query::select();
    q.from(Alias::new(OUTBOX));
    for (column, value) in [
        ("status", &query.status),
        ("topic", &query.topic),
        ("target", &query.target),
    ] {
        if let Some(value) = value {
            q.and_where(Expr::col(Alias::new(column)).eq(value.as_str()));
        }
    }
    q
}

fn row_json(
    row: &sea_orm::QueryResult,
    columns: &[(&str, ColumnKind)],
    dialect: Dialect,
) -> Result<serde_json::Map<String, Json>, StoreError> {
    let mut out = serde_json::Map::new();
    for (column, kind) in columns {
        out.insert((*column).to_owned(), from_row(row, column, *kind, dialect)?);
    }
    Ok(out)
}

/// Messages, newest first, and how many match in all.
pub async fn list_messages(
    store: &Store,
    query: &OutboxQuery,
) -> Result<(Vec<Json>, i64), StoreError> {
    let dialect = store.dialect();
    let mut q = filtered(query);
    q.columns(MESSAGE_COLUMNS.iter().map(|(c, _)| Alias::new(*c)))
        .order_by(Alias::new("id"), Order::Desc)
        .limit(query.limit)
        .offset(query.offset);
    let mut data = Vec::new();
    for row in store.connection().query_all(&q).await? {
        data.push(Json::Object(row_json(&row, MESSAGE_COLUMNS, dialect)?));
    }
    let mut total = filtered(query);
    total.expr(Func::count(Expr::col(Alias::new("id"))));
    let total = match store.connection().query_one(&total).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    };
    Ok((data, total))
}

/// One message with its payload and every attempt, oldest first.
pub async fn message(store: &Store, id: i64) -> Result<Option<Json>, StoreError> {
    let dialect = store.dialect();
    let mut q = Query::select();
    q.columns(MESSAGE_COLUMNS.iter().map(|(c, _)| Alias::new(*c)))
        .column(Alias::new("payload"))
        .from(Alias::new(OUTBOX))
        .and_where(Expr::col(Alias::new("id")).eq(id));
    let Some(row) = store.connection().query_one(&q).await? else {
        return Ok(None);
    };
    let mut out = row_json(&row, MESSAGE_COLUMNS, dialect)?;
    let payload: String = row.try_get("", "payload")?;
    out.insert(
        "payload".into(),
        serde_json::from_str(&payload).unwrap_or(Json::String(payload)),
    );
    let mut attempts = Query::select();
    attempts
        .columns(ATTEMPT_COLUMNS.iter().map(|(c, _)| Alias::new(*c)))
        .from(Alias::new(ATTEMPTS))
        .and_where(Expr::col(Alias::new("outbox_id")).eq(id))
        .order_by(Alias::new("id"), Order::Asc);
    let mut log = Vec::new();
    for row in store.connection().query_all(&attempts).await? {
        let mut entry = row_json(&row, ATTEMPT_COLUMNS, dialect)?;
        let us = entry
            .remove("duration_us")
            .and_then(|v| v.as_i64())
            .unwrap_or(0);
        entry.insert("duration_ms".into(), json!(us as f64 / 1000.0));
        log.push(Json::Object(entry));
    }
    out.insert("attempt_log".into(), Json::Array(log));
    Ok(Some(Json::Object(out)))
}

/// What a manual re-push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// The message is pending again and due at once.
    Requeued,
    /// It is pending already.
    AlreadyPending,
    NotFound,
}

/// Makes a delivered or failed message pending again, with a fresh run of
/// attempts (its earlier ones stay in the log); `by` is the administrator.
pub async fn requeue(store: &Store, id: i64, by: Option<i64>) -> Result<Requeue, StoreError> {
    let dialect = store.dialect();
    let now = chrono::Utc::now();
    let mut update = Query::update();
    update
        .table(Alias::new(OUTBOX))
        .value(Alias::new("status"), PENDING)
        .value(Alias::new("next_attempt_at"), dialect.time(now))
        .value(Alias::new("delivered_at"), null_time(dialect))
        .value(
            Alias::new("attempts_before_retry"),
            Expr::col(Alias::new("attempts")),
        )
        .value(Alias::new("leased_by"), Option::<String>::None)
        .value(Alias::new("leased_until"), null_time(dialect))
        .value(Alias::new("retried_at"), dialect.time(now))
        .value(Alias::new("retried_by"), sea_orm::Value::BigInt(by))
        .and_where(Expr::col(Alias::new("id")).eq(id))
        .and_where(Expr::col(Alias::new("status")).is_in([DELIVERED, FAILED]));
    if store.connection().execute(&update).await?.rows_affected() > 0 {
        tracing::info!(outbox_id = id, by, "outbox message re-pushed");
        return Ok(Requeue::Requeued);
    }
    let mut exists = Query::select();
    exists
        .column(Alias::new("id"))
        .from(Alias::new(OUTBOX))
        .and_where(Expr::col(Alias::new("id")).eq(id));
    Ok(match store.connection().query_one(&exists).await? {
        Some(_) => Requeue::AlreadyPending,
        None => Requeue::NotFound,
    })
}
