//! In-app notifications: written by [`super::notify`] in the sender's
//! transaction, read and marked read by their recipient only.

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Order, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use serde_json::{Value as Json, json};

use super::recipients::Person;
use super::render::Text;
use super::{About, NOTIFICATIONS};
use crate::record::value::from_row;
use crate::store::{ColumnKind, Dialect, Store, StoreError};

/// One page of a user's notifications.
#[derive(Debug, Clone, Default)]
pub struct InboxQuery {
    pub unread_only: bool,
    pub limit: u64,
    pub offset: u64,
}

/// A page, how many match in all, and how many are unread.
#[derive(Debug, Clone)]
pub struct InboxPage {
    pub data: Vec<Json>,
    pub total: i64,
    pub unread: i64,
}

/// Writes one row per person.
pub(super) async fn insert(
    txn: &DatabaseTransaction,
    dialect: Dialect,
    people: &[Person],
    subject: Option<&Text>,
    message: &Text,
    about: &About<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    if people.is_empty() {
        return Ok(());
    }
    let mut insert = Query::insert();
    insert.into_table(Alias::new(NOTIFICATIONS)).columns(
        [
            "user_id",
            "created_at",
            "subject",
            "message",
            "subject_zh",
            "message_zh",
            "app",
            "entity",
            "record_id",
        ]
        .map(Alias::new),
    );
    for person in people {
        insert.values_panic([
            person.id.into(),
            dialect.time(now).into(),
            subject.map(|s| s.en.clone()).into(),
            message.en.clone().into(),
            subject.and_then(|s| s.zh.clone()).into(),
            message.zh.clone().into(),
            about.app.into(),
            about.entity.into(),
            about.record_id.into(),
        ]);
    }
    txn.execute(&insert).await?;
    Ok(())
}

fn mine(user_id: i64, unread_only: bool) -> SelectStatement {
    let mut q = Query::select();
    q.from(Alias::new(NOTIFICATIONS))
        .and_where(Expr::col(Alias::new("user_id")).eq(user_id));
    if unread_only {
        q.and_where(Expr::col(Alias::new("read_at")).is_null());
    }
    q
}

async fn count(store: &Store, mut q: SelectStatement) -> Result<i64, StoreError> {
    q.expr(Func::count(Expr::col(Alias::new("id"))));
    Ok(match store.connection().query_one(&q).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    })
}

/// A user's notifications, newest first.
pub async fn list(
    store: &Store,
    user_id: i64,
    query: &InboxQuery,
) -> Result<InboxPage, StoreError> {
    let dialect = store.dialect();
    let mut q = mine(user_id, query.unread_only);
    q.columns(
        [
            "id",
            "created_at",
            "subject",
            "message",
            "subject_zh",
            "message_zh",
            "app",
            "entity",
            "record_id",
            "read_at",
        ]
        .map(Alias::new),
    )
    .order_by(Alias::new("id"), Order::Desc)
    .limit(query.limit)
    .offset(query.offset);
    let mut data = Vec::new();
    for row in store.connection().query_all(&q).await? {
        let get = |column: &str, kind| from_row(&row, column, kind, dialect);
        let label = |en: Json, zh: Json| match (en, zh) {
            (Json::String(en), Json::String(zh)) => json!({"en": en, "zh": zh}),
            (en, _) => en,
        };
        let read_at = get("read_at", ColumnKind::DateTime)?;
        data.push(json!({
            "id": get("id", ColumnKind::Id)?,
            "created_at": get("created_at", ColumnKind::DateTime)?,
            "subject": label(get("subject", ColumnKind::Text)?, get("subject_zh", ColumnKind::Text)?),
            "message": label(get("message", ColumnKind::Text)?, get("message_zh", ColumnKind::Text)?),
            "app": get("app", ColumnKind::Text)?,
            "entity": get("entity", ColumnKind::Text)?,
            "record_id": get("record_id", ColumnKind::Integer)?,
            "read": !Json::is_null(&read_at),
            "read_at": read_at,
        }));
    }
    Ok(InboxPage {
        data,
        total: count(store, mine(user_id, query.unread_only)).await?,
        unread: count(store, mine(user_id, true)).await?,
    })
}

/// Marks one of a user's notifications read (again is harmless); false when
/// they have no such notification.
pub async fn mark_read(store: &Store, user_id: i64, id: i64) -> Result<bool, StoreError> {
    let mut exists = mine(user_id, false);
    exists
        .column(Alias::new("id"))
        .and_where(Expr::col(Alias::new("id")).eq(id));
    if store.connection().query_one(&exists).await?.is_none() {
        return Ok(false);
    }
    let mut update = Query::update();
    update
        .table(Alias::new(NOTIFICATIONS))
        .value(
            Alias::new("read_at"),
            store.dialect().time(chrono::Utc::now()),
        )
        .and_where(Expr::col(Alias::new("id")).eq(id))
        .and_where(Expr::col(Alias::new("user_id")).eq(user_id))
        .and_where(Expr::col(Alias::new("read_at")).is_null());
    store.connection().execute(&update).await?;
    Ok(true)
}

/// Marks every unread notification of a user read; returns how many.
pub async fn mark_all_read(store: &Store, user_id: i64) -> Result<u64, StoreError> {
    let mut update = Query::update();
    update
        .table(Alias::new(NOTIFICATIONS))
        .value(
            Alias::new("read_at"),
            store.dialect().time(chrono::Utc::now()),
        )
        .and_where(Expr::col(Alias::new("user_id")).eq(user_id))
        .and_where(Expr::col(Alias::new("read_at")).is_null());
    Ok(store.connection().execute(&update).await?.rows_affected())
}
