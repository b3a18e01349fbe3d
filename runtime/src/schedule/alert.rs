//! One run of an alert: the matching records come from SQL (the alert's
//! filter, like any list), and each *occurrence* notifies once. A record that
//! starts to match is an occurrence; it stays one, without new notifications
//! (unless `repeat_after` has passed), until the record stops matching.
//! Occurrences live in `trellis_alert_hits`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use serde_json::{Map, Value as Json};
use trellis_engine::model::Alert;

use super::ALERT_HITS;
use super::runs::{self, Report};
use crate::catalog::EntityModel;
use crate::notify::{About, Notification};
use crate::read::{Access, ListQuery, Paging, RecordReader};
use crate::record::RecordError;
use crate::record::value::from_row;
use crate::store::{ColumnKind, Store};

/// The most records one run looks at: an alert is about records that need
/// attention, and a filter matching more is a mistake of the model, reported
/// as a failed run rather than a flood of notifications.
pub const MATCH_CAP: usize = 10_000;

/// Records read per statement.
const PAGE: u64 = 500;

/// An alert ready to run.
#[derive(Debug, Clone)]
pub struct AlertModel {
    pub entity: std::sync::Arc<EntityModel>,
    pub def: Alert,
    /// `repeat_after` in seconds.
    pub repeat_after: Option<i64>,
}

/// Runs the alert `name` for the run `run_id`: notifications, occurrences and
/// the run's record commit together.
pub async fn run(
    store: &Store,
    reader: &RecordReader,
    name: &str,
    alert: &AlertModel,
    run_id: i64,
    now: DateTime<Utc>,
) -> Result<Report, RecordError> {
    let matches = matching(reader, alert).await?;
    let dialect = store.dialect();
    let txn = store.begin_write().await?;
    runs::lock_item(&txn, name).await?;
    let mut hits = Query::select();
    hits.columns(["record_id", "notified_at"].map(Alias::new))
        .from(Alias::new(ALERT_HITS))
        .and_where(Expr::col(Alias::new("alert")).eq(name));
    let mut known: HashMap<i64, Option<DateTime<Utc>>> = HashMap::new();
    for row in txn.query_all(&hits).await? {
        let at = from_row(&row, "notified_at", ColumnKind::DateTime, dialect)?;
        known.insert(
            row.try_get("", "record_id")?,
            at.as_str().and_then(runs::parse_time),
        );
    }
    // Records that stopped matching end their occurrence.
    let ended: Vec<i64> = known
        .keys()
        .copied()
        .filter(|id| !matches.iter().any(|(m, _)| m == id))
        .collect();
    if !ended.is_empty() {
        let mut delete = Query::delete();
        delete
            .from_table(Alias::new(ALERT_HITS))
            .and_where(Expr::col(Alias::new("alert")).eq(name))
            .and_where(Expr::col(Alias::new("record_id")).is_in(ended));
        txn.execute(&delete).await?;
    }
    let notification = Notification {
        recipients: alert.def.recipients.clone(),
        channels: alert.def.channels.clone(),
        subject: alert.def.subject.clone(),
        message: alert.def.message.clone(),
    };
    let mut notified = 0;
    for (id, values) in &matches {
        let due = match known.get(id) {
            None => true,
            Some(last) => alert.repeat_after.is_some_and(|every| {
                last.is_none_or(|at| at + chrono::Duration::seconds(every) <= now)
            }),
        };
        if !due {
            continue;
        }
        let about = About {
            app: &alert.entity.app,
            entity: &alert.entity.name,
            record_id: *id,
            record: values,
        };
        crate::notify::notify(&txn, dialect, &notification, &about).await?;
        notified += 1;
        if known.contains_key(id) {
            let mut update = Query::update();
            update
                .table(Alias::new(ALERT_HITS))
                .value(Alias::new("notified_at"), dialect.time(now))
                .and_where(Expr::col(Alias::new("alert")).eq(name))
                .and_where(Expr::col(Alias::new("record_id")).eq(*id));
            txn.execute(&update).await?;
        } else {
            let mut insert = Query::insert();
            insert
                .into_table(Alias::new(ALERT_HITS))
                .columns(["alert", "record_id", "first_matched_at", "notified_at"].map(Alias::new))
                .values_panic([
                    name.into(),
                    (*id).into(),
                    dialect.time(now).into(),
                    dialect.time(now).into(),
                ]);
            txn.execute(&insert).await?;
        }
    }
    let report = Report {
        matched: matches.len() as i64,
        notified,
        ..Report::default()
    };
    runs::finish_run(&txn, dialect, name, run_id, &report).await?;
    txn.commit().await?;
    Ok(report)
}

/// The records matching the alert's filter, id and values, read in keyset
/// pages; more than [`MATCH_CAP`] is an error.
async fn matching(
    reader: &RecordReader,
    alert: &AlertModel,
) -> Result<Vec<(i64, Map<String, Json>)>, RecordError> {
    let mut out = Vec::new();
    let mut paging = Paging::First;
    loop {
        let query = ListQuery {
            filter: Some(alert.def.filter.clone()),
            limit: Some(PAGE),
            paging,
            ..ListQuery::default()
        };
        let page = reader
            .list(&alert.entity, &query, &Access::everything())
            .await?;
        for record in page.records {
            let mut values = record.values;
            values.insert("id".into(), Json::from(record.id));
            out.push((record.id, values));
        }
        if out.len() > MATCH_CAP {
            return Err(RecordError::BadQuery(format!(
                "the alert's filter matches more than {MATCH_CAP} records"
            )));
        }
        match page.next {
            Some(next) => paging = Paging::After(next),
            None => return Ok(out),
        }
    }
}
