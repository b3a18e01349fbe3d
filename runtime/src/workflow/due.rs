//! Due times of workflow states (`due:`): when a record enters a state that
//! has one, its due time is written beside it (on the action's transaction);
//! the scheduler's pass [`remind_and_escalate`] then reminds the people who
//! can act `remind_before` ahead, and tells `escalate_to` once the time has
//! passed — each once per entry into the state.

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::ConnectionTrait;
use sea_orm::DatabaseTransaction;
use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, Order, Query};
use serde_json::{Map, Value as Json};
use trellis_engine::check::duration_seconds;
use trellis_engine::model::{Label, Recipient, State, Translations};

use super::history::Subject;
use crate::catalog::Catalog;
use crate::notify::{About, Notification};
use crate::record::RecordError;
use crate::record::value::from_row;
use crate::store::{ColumnKind, Dialect, Store};

/// One row per record waiting in a state with a due time.
pub const DUE: &str = "trellis_workflow_due";

/// The record moved to `state`: its previous due time goes, and the state's
/// own (if it has one) is counted from the `from` field or from now.
pub async fn enter(
    txn: &DatabaseTransaction,
    dialect: Dialect,
    subject: Subject<'_>,
    state_name: &str,
    state: Option<&State>,
    values: &Map<String, Json>,
    now: DateTime<Utc>,
) -> Result<(), RecordError> {
    let mut delete = Query::delete();
    delete
        .from_table(Alias::new(DUE))
        .and_where(Expr::col(Alias::new("app")).eq(subject.app))
        .and_where(Expr::col(Alias::new("entity")).eq(subject.entity))
        .and_where(Expr::col(Alias::new("record_id")).eq(subject.id));
    txn.execute(&delete).await?;
    let Some(due) = state.and_then(|s| s.due.as_ref()) else {
        return Ok(());
    };
    let start = match &due.from {
        Some(field) => values.get(field).and_then(instant),
        None => Some(now),
    };
    let (Some(start), Some(after)) = (start, duration_seconds(&due.after)) else {
        return Ok(());
    };
    let due_at = start + chrono::Duration::seconds(after);
    let remind_at = due
        .remind_before
        .as_deref()
        .and_then(duration_seconds)
        .map(|before| due_at - chrono::Duration::seconds(before));
    let mut insert = Query::insert();
    insert
        .into_table(Alias::new(DUE))
        .columns(["app", "entity", "record_id", "state", "due_at", "remind_at"].map(Alias::new))
        .values_panic([
            subject.app.into(),
            subject.entity.into(),
            subject.id.into(),
            state_name.into(),
            dialect.time(due_at).into(),
            match remind_at {
                Some(t) => dialect.time(t),
                None => dialect.time(due_at).as_null(),
            }
            .into(),
        ]);
    txn.execute(&insert).await?;
    Ok(())
}

/// A date (midnight UTC) or a datetime value.
fn instant(value: &Json) -> Option<DateTime<Utc>> {
    let text = value.as_str()?;
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()?
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
}

/// Who is told what about one due row.
pub struct Notice {
    pub recipients: Vec<Recipient>,
    pub escalation: bool,
}

/// The recipients of reminders and escalations for a state of an entity's
/// workflow: (people who can act, `escalate_to`), or none when the state has
/// no due time any more.
pub type Recipients<'a> =
    dyn Fn(&str, &str, &str) -> Option<(Vec<Recipient>, Vec<Recipient>)> + Sync + 'a;

/// Sends the reminders and escalations due at `now`, marking each sent in the
/// same transaction. Returns (records reminded, records escalated).
pub async fn remind_and_escalate(
    store: &Store,
    catalog: &Catalog,
    recipients: &Recipients<'_>,
    now: DateTime<Utc>,
) -> Result<(i64, i64), RecordError> {
    let dialect = store.dialect();
    let txn = store.begin_write().await?;
    let mut q = Query::select();
    q.columns(
        [
            "id",
            "app",
            "entity",
            "record_id",
            "state",
            "due_at",
            "remind_at",
            "reminded_at",
            "escalated_at",
        ]
        .map(Alias::new),
    )
    .from(Alias::new(DUE))
    .cond_where(
        Condition::any()
            .add(
                Expr::col(Alias::new("remind_at"))
                    .lte(dialect.time(now))
                    .and(Expr::col(Alias::new("reminded_at")).is_null()),
            )
            .add(
                Expr::col(Alias::new("due_at"))
                    .lte(dialect.time(now))
                    .and(Expr::col(Alias::new("escalated_at")).is_null()),
            ),
    )
    .order_by(Alias::new("id"), Order::Asc)
    .limit(1_000);
    let (mut reminded, mut escalated) = (0, 0);
    for row in txn.query_all(&q).await? {
        let id: i64 = row.try_get("", "id")?;
        let app: String = row.try_get("", "app")?;
        let entity_name: String = row.try_get("", "entity")?;
        let record_id: i64 = row.try_get("", "record_id")?;
        let state: String = row.try_get("", "state")?;
        let due_at = from_row(&row, "due_at", ColumnKind::DateTime, dialect)?;
        let time = |c: &str| {
            from_row(&row, c, ColumnKind::DateTime, dialect).map(|v: Json| !Json::is_null(&v))
        };
        let overdue = due_at
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t <= now);
        let escalate = overdue && !time("escalated_at")?;
        let remind = !escalate && time("remind_at")? && !time("reminded_at")?;
        // A row whose record is gone, or whose state has no due time in the
        // deployed model any more, ends here instead of coming back each pass.
        let mut forget = Query::delete();
        forget
            .from_table(Alias::new(DUE))
            .and_where(Expr::col(Alias::new("id")).eq(id));
        let (Some(entity), Some((actors, escalate_to))) = (
            catalog.entity(&app, &entity_name),
            recipients(&app, &entity_name, &state),
        ) else {
            txn.execute(&forget).await?;
            continue;
        };
        let Some((_, base)) =
            crate::read::load::load(&txn, dialect, &entity, record_id, false, Condition::all())
                .await?
        else {
            txn.execute(&forget).await?;
            continue;
        };
        let mut values = base.values;
        values.insert("id".into(), Json::from(record_id));
        let title = entity
            .title
            .as_ref()
            .and_then(|t| values.get(t))
            .map_or_else(
                || format!("#{record_id}"),
                |v| v.as_str().map_or(v.to_string(), str::to_owned),
            );
        let due = due_at.as_str().unwrap_or_default();
        let notice = if escalate {
            Notice {
                recipients: escalate_to,
                escalation: true,
            }
        } else {
            Notice {
                recipients: actors,
                escalation: false,
            }
        };
        let message = if notice.escalation {
            both(
                format!(
                    "Overdue: {} {title} has been in `{state}` past its due time ({due}).",
                    entity.name
                ),
                format!(
                    "已超期：{} {title} 在「{state}」状态已超过期限（{due}）。",
                    entity.name
                ),
            )
        } else {
            both(
                format!(
                    "Reminder: {} {title} in `{state}` is due at {due}.",
                    entity.name
                ),
                format!("提醒：{} {title}（{state}）将于 {due} 到期。", entity.name),
            )
        };
        let notification = Notification {
            recipients: notice.recipients,
            channels: Vec::new(),
            subject: None,
            message,
        };
        let about = About {
            app: &app,
            entity: &entity_name,
            record_id,
            record: &values,
        };
        if escalate || remind {
            crate::notify::notify(&txn, dialect, &notification, &about).await?;
        }
        let mut update = Query::update();
        update
            .table(Alias::new(DUE))
            .and_where(Expr::col(Alias::new("id")).eq(id));
        if escalate {
            // An escalation replaces a reminder that was not sent in time.
            update.value(Alias::new("escalated_at"), dialect.time(now));
            update.value(Alias::new("reminded_at"), dialect.time(now));
            escalated += 1;
        } else {
            update.value(Alias::new("reminded_at"), dialect.time(now));
            reminded += i64::from(remind);
        }
        txn.execute(&update).await?;
    }
    txn.commit().await?;
    Ok((reminded, escalated))
}

fn both(en: String, zh: String) -> Label {
    Label::Translated(Translations { en, zh: Some(zh) })
}
