//! The scheduler's tables: one row per scheduled item with its next due time
//! (`trellis_jobs`), claiming the due ones, and the record of every run
//! (`trellis_job_runs`).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{
    Alias, Expr, ExprTrait, LockBehavior, LockType, OnConflict, Order, Query,
};
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use serde_json::{Value as Json, json};

use super::{JOBS, RUNS};
use crate::record::value::from_row;
use crate::store::{ColumnKind, Dialect, Store, StoreError};

/// A scheduled item as stored: its name, schedule text and next due time.
pub struct Slot<'a> {
    pub name: &'a str,
    pub schedule: &'a str,
    pub next: Option<DateTime<Utc>>,
}

/// Makes sure each item has its row; an item whose schedule changed since it
/// was stored gets its new next due time. Rows of items no longer in the model
/// stay (with their runs) and are never claimed.
pub async fn register(store: &Store, slots: &[Slot<'_>]) -> Result<(), StoreError> {
    let dialect = store.dialect();
    let txn = store.begin_write().await?;
    for slot in slots {
        let mut insert = Query::insert();
        insert
            .into_table(Alias::new(JOBS))
            .columns(["name", "schedule", "next_run_at"].map(Alias::new))
            .values_panic([
                slot.name.into(),
                slot.schedule.into(),
                time_or_null(dialect, slot.next).into(),
            ])
            .on_conflict(
                OnConflict::column(Alias::new("name"))
                    .do_nothing()
                    .to_owned(),
            );
        txn.execute(&insert).await?;
        let mut update = Query::update();
        update
            .table(Alias::new(JOBS))
            .value(Alias::new("schedule"), slot.schedule)
            .value(Alias::new("next_run_at"), time_or_null(dialect, slot.next))
            .and_where(Expr::col(Alias::new("name")).eq(slot.name))
            .and_where(
                Expr::col(Alias::new("schedule"))
                    .ne(slot.schedule)
                    .or(Expr::col(Alias::new("schedule")).is_null()),
            );
        txn.execute(&update).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// A due run claimed by this node.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub name: String,
    pub run_id: i64,
}

/// Claims the items of `names` that are due at `now`: in one write
/// transaction each one's next due time moves past `now` (to `next(name)`) and
/// a run row is written, so each due time is claimed by exactly one node.
pub async fn claim_due(
    store: &Store,
    names: &[&str],
    now: DateTime<Utc>,
    node: &str,
    next: impl Fn(&str) -> Option<DateTime<Utc>>,
) -> Result<Vec<Claimed>, StoreError> {
    let dialect = store.dialect();
    let due = || {
        Expr::col(Alias::new("next_run_at"))
            .lte(dialect.time(now))
            .and(Expr::col(Alias::new("name")).is_in(names.iter().copied()))
    };
    // A plain read first: most ticks find nothing due and need no write lock.
    let mut any = Query::select();
    any.column(Alias::new("id"))
        .from(Alias::new(JOBS))
        .and_where(due())
        .limit(1);
    if store.connection().query_one(&any).await?.is_none() {
        return Ok(Vec::new());
    }
    let txn = store.begin_write().await?;
    let mut q = Query::select();
    q.columns(["name", "next_run_at"].map(Alias::new))
        .from(Alias::new(JOBS))
        .and_where(due())
        .order_by(Alias::new("name"), Order::Asc)
        // Other nodes skip rows being claimed; once this commits the rows are
        // no longer due. SQLite's write transaction excludes other claimers.
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    let mut claimed = Vec::new();
    for row in txn.query_all(&q).await? {
        let name: String = row.try_get("", "name")?;
        let due_at = from_row(&row, "next_run_at", ColumnKind::DateTime, dialect)?;
        let mut update = Query::update();
        update
            .table(Alias::new(JOBS))
            .value(
                Alias::new("next_run_at"),
                time_or_null(dialect, next(&name)),
            )
            .value(Alias::new("leased_by"), node)
            .value(Alias::new("last_started_at"), dialect.time(now))
            .and_where(Expr::col(Alias::new("name")).eq(name.as_str()));
        txn.execute(&update).await?;
        let due_at = due_at.as_str().and_then(parse_time);
        let run_id = start_run(&txn, dialect, &name, node, due_at, None, now).await?;
        claimed.push(Claimed { name, run_id });
    }
    txn.commit().await?;
    Ok(claimed)
}

/// Writes the row of a run that starts now.
pub async fn start_run(
    conn: &impl ConnectionTrait,
    dialect: Dialect,
    name: &str,
    node: &str,
    due_at: Option<DateTime<Utc>>,
    manual_by: Option<i64>,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let mut insert = Query::insert();
    insert
        .into_table(Alias::new(RUNS))
        .columns(["name", "manual_by", "node", "due_at", "started_at"].map(Alias::new))
        .values_panic([
            name.into(),
            manual_by.into(),
            node.into(),
            time_or_null(dialect, due_at).into(),
            dialect.time(now).into(),
        ])
        .returning_col(Alias::new("id"));
    let row = conn
        .query_one(&insert)
        .await?
        .ok_or(sea_orm::DbErr::RecordNotInserted)?;
    Ok(row.try_get("", "id")?)
}

/// How a run ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// Records that matched (an alert's filter).
    pub matched: i64,
    /// Records whose recipients were told this run.
    pub notified: i64,
    /// Why the run failed; none when it succeeded.
    pub error: Option<String>,
    /// The failure as field errors with their codes (`script`, `rule`…), for
    /// callers that tell failures apart (app tests); not part of the API.
    #[serde(skip)]
    pub failure: Vec<crate::record::FieldError>,
}

/// Records the end of a run, and the item's last result, on `conn` (an
/// alert's own transaction, so that its notifications and its record commit
/// together).
pub async fn finish_run(
    conn: &impl ConnectionTrait,
    dialect: Dialect,
    name: &str,
    run_id: i64,
    report: &Report,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let result = if report.error.is_some() {
        "failed"
    } else {
        "ok"
    };
    let mut update = Query::update();
    update
        .table(Alias::new(RUNS))
        .value(Alias::new("finished_at"), dialect.time(now))
        .value(Alias::new("matched"), report.matched)
        .value(Alias::new("notified"), report.notified)
        .value(Alias::new("result"), result)
        .value(Alias::new("error"), report.error.clone())
        .and_where(Expr::col(Alias::new("id")).eq(run_id));
    conn.execute(&update).await?;
    let mut item = Query::update();
    item.table(Alias::new(JOBS))
        .value(Alias::new("last_finished_at"), dialect.time(now))
        .value(Alias::new("last_result"), result)
        .and_where(Expr::col(Alias::new("name")).eq(name));
    conn.execute(&item).await?;
    Ok(())
}

/// Locks an item's row until `txn` ends, so that two runs of one item (a
/// scheduled and a manual one) never evaluate it at the same time.
pub async fn lock_item(txn: &DatabaseTransaction, name: &str) -> Result<(), StoreError> {
    let mut q = Query::select();
    q.column(Alias::new("id"))
        .from(Alias::new(JOBS))
        .and_where(Expr::col(Alias::new("name")).eq(name))
        .lock(LockType::Update);
    txn.query_one(&q).await?;
    Ok(())
}

/// Each stored item: name, schedule, next due time and last result.
pub async fn items(store: &Store) -> Result<Vec<Json>, StoreError> {
    let dialect = store.dialect();
    let mut q = Query::select();
    q.columns(
        [
            "name",
            "schedule",
            "next_run_at",
            "last_started_at",
            "last_finished_at",
            "last_result",
        ]
        .map(Alias::new),
    )
    .from(Alias::new(JOBS))
    .order_by(Alias::new("name"), Order::Asc);
    let mut out = Vec::new();
    for row in store.connection().query_all(&q).await? {
        let time = |c: &str| from_row(&row, c, ColumnKind::DateTime, dialect);
        out.push(json!({
            "name": row.try_get::<String>("", "name")?,
            "schedule": row.try_get::<Option<String>>("", "schedule")?,
            "next_run_at": time("next_run_at")?,
            "last_started_at": time("last_started_at")?,
            "last_finished_at": time("last_finished_at")?,
            "last_result": row.try_get::<Option<String>>("", "last_result")?,
        }));
    }
    Ok(out)
}

/// The latest runs of an item, newest first.
pub async fn runs(store: &Store, name: &str, limit: u64) -> Result<Vec<Json>, StoreError> {
    let dialect = store.dialect();
    let mut q = Query::select();
    q.columns(
        [
            "id",
            "manual_by",
            "node",
            "due_at",
            "started_at",
            "finished_at",
            "matched",
            "notified",
            "result",
            "error",
        ]
        .map(Alias::new),
    )
    .from(Alias::new(RUNS))
    .and_where(Expr::col(Alias::new("name")).eq(name))
    .order_by(Alias::new("id"), Order::Desc)
    .limit(limit);
    let mut out = Vec::new();
    for row in store.connection().query_all(&q).await? {
        let time = |c: &str| from_row(&row, c, ColumnKind::DateTime, dialect);
        let int = |c: &str| from_row(&row, c, ColumnKind::Integer, dialect);
        out.push(json!({
            "id": int("id")?,
            "manual_by": int("manual_by")?,
            "node": row.try_get::<String>("", "node")?,
            "due_at": time("due_at")?,
            "started_at": time("started_at")?,
            "finished_at": time("finished_at")?,
            "matched": int("matched")?,
            "notified": int("notified")?,
            "result": row.try_get::<Option<String>>("", "result")?,
            "error": row.try_get::<Option<String>>("", "error")?,
        }));
    }
    Ok(out)
}

fn time_or_null(dialect: Dialect, t: Option<DateTime<Utc>>) -> sea_orm::Value {
    match (t, dialect) {
        (Some(t), _) => dialect.time(t),
        (None, Dialect::Sqlite) => sea_orm::Value::String(None),
        (None, Dialect::Postgres) => sea_orm::Value::ChronoDateTimeUtc(None),
    }
}

/// A stored time, as `from_row` gives it.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
