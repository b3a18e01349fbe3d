//! The workflow history of a record: one row per decision. The rows since the
//! record last changed state are also the approval under way (who approved,
//! who transferred their turn, who was added), so there is no second copy of
//! that state to keep in step.

use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
use serde::Serialize;
use serde_json::Value as Json;

use crate::deploy::WORKFLOW_HISTORY;
use crate::record::RecordError;
use crate::record::value::from_row;
use crate::store::{ColumnKind, Dialect};

/// What a history row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The record moved from one state to another (or a button ran).
    Transition,
    /// An approval that does not complete the action yet (countersign, quorum).
    Approval,
    /// An added approver signed off; the original approvers continue.
    Signoff,
    /// The submitter took the record back before anyone decided.
    Withdraw,
    /// An approver handed their turn to someone else.
    Transfer,
    /// An approver asked someone else to approve first.
    AddSign,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Transition => "transition",
            Kind::Approval => "approval",
            Kind::Signoff => "signoff",
            Kind::Withdraw => "withdraw",
            Kind::Transfer => "transfer",
            Kind::AddSign => "add_sign",
        }
    }

    fn parse(text: &str) -> Option<Kind> {
        [
            Kind::Transition,
            Kind::Approval,
            Kind::Signoff,
            Kind::Withdraw,
            Kind::Transfer,
            Kind::AddSign,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }

    /// Rows of these kinds end an approval round: the record changed state.
    pub fn ends_round(self) -> bool {
        matches!(self, Kind::Transition | Kind::Withdraw)
    }
}

/// One decision.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub id: i64,
    pub at: Json,
    pub kind: Kind,
    pub action: Option<String>,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub user_id: Option<i64>,
    /// Why the user could decide: `role hr`, `field approver`, `deputy of #7`…
    pub via: Option<String>,
    /// The user a transfer or add-sign named.
    pub target_user: Option<i64>,
    pub comment: Option<String>,
}

/// A row to write.
pub struct NewEntry<'a> {
    pub kind: Kind,
    pub action: Option<&'a str>,
    pub from_state: Option<&'a str>,
    pub to_state: Option<&'a str>,
    pub user_id: Option<i64>,
    pub via: Option<&'a str>,
    pub target_user: Option<i64>,
    pub comment: Option<&'a str>,
}

/// The record a history belongs to.
#[derive(Clone, Copy)]
pub struct Subject<'a> {
    pub app: &'a str,
    pub entity: &'a str,
    pub id: i64,
}

/// Writes one decision, dated `at` (the store's clock).
pub async fn write<C: ConnectionTrait>(
    conn: &C,
    dialect: Dialect,
    subject: Subject<'_>,
    entry: NewEntry<'_>,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), RecordError> {
    let at = dialect.time(at);
    let mut insert = Query::insert();
    insert
        .into_table(Alias::new(WORKFLOW_HISTORY))
        .columns(
            [
                "at",
                "app",
                "entity",
                "record_id",
                "kind",
                "action",
                "from_state",
                "to_state",
                "user_id",
                "via",
                "target_user",
                "comment",
            ]
            .map(Alias::new),
        )
        .values_panic([
            at.into(),
            subject.app.into(),
            subject.entity.into(),
            subject.id.into(),
            entry.kind.as_str().into(),
            entry.action.map(str::to_owned).into(),
            entry.from_state.map(str::to_owned).into(),
            entry.to_state.map(str::to_owned).into(),
            entry.user_id.into(),
            entry.via.map(str::to_owned).into(),
            entry.target_user.into(),
            entry.comment.map(str::to_owned).into(),
        ]);
    conn.execute(&insert).await?;
    Ok(())
}

/// A record's history, oldest first.
pub async fn read<C: ConnectionTrait>(
    conn: &C,
    dialect: Dialect,
    subject: Subject<'_>,
) -> Result<Vec<Entry>, RecordError> {
    let mut q = Query::select();
    q.columns(
        [
            "id",
            "at",
            "kind",
            "action",
            "from_state",
            "to_state",
            "user_id",
            "via",
            "target_user",
            "comment",
        ]
        .map(Alias::new),
    )
    .from(Alias::new(WORKFLOW_HISTORY))
    .and_where(Expr::col(Alias::new("app")).eq(subject.app))
    .and_where(Expr::col(Alias::new("entity")).eq(subject.entity))
    .and_where(Expr::col(Alias::new("record_id")).eq(subject.id))
    .order_by(Alias::new("id"), Order::Asc);
    let mut out = Vec::new();
    for row in conn.query_all(&q).await? {
        let text = |c: &str| row.try_get::<Option<String>>("", c);
        let int = |c: &str| row.try_get::<Option<i64>>("", c);
        let kind = text("kind")?
            .as_deref()
            .and_then(Kind::parse)
            .ok_or_else(|| {
                RecordError::BadQuery("a workflow history row of an unknown kind".into())
            })?;
        out.push(Entry {
            id: int("id")?.unwrap_or_default(),
            at: from_row(&row, "at", ColumnKind::DateTime, dialect)?,
            kind,
            action: text("action")?,
            from_state: text("from_state")?,
            to_state: text("to_state")?,
            user_id: int("user_id")?,
            via: text("via")?,
            target_user: int("target_user")?,
            comment: text("comment")?,
        });
    }
    Ok(out)
}

/// The rows since the record last changed state: the approval under way.
pub fn current_round(entries: &[Entry]) -> &[Entry] {
    let start = entries
        .iter()
        .rposition(|e| e.kind.ends_round())
        .map_or(0, |i| i + 1);
    &entries[start..]
}

/// Records of an entity on which `user` was handed a turn (transfer, add-sign).
pub async fn handed_to<C: ConnectionTrait>(
    conn: &C,
    app: &str,
    entity: &str,
    user: i64,
) -> Result<Vec<i64>, RecordError> {
    let mut q = Query::select();
    q.distinct()
        .column(Alias::new("record_id"))
        .from(Alias::new(WORKFLOW_HISTORY))
        .and_where(Expr::col(Alias::new("target_user")).eq(user))
        .and_where(Expr::col(Alias::new("app")).eq(app))
        .and_where(Expr::col(Alias::new("entity")).eq(entity))
        .limit(500);
    let mut ids = Vec::new();
    for row in conn.query_all(&q).await? {
        ids.push(row.try_get_by_index::<i64>(0)?);
    }
    Ok(ids)
}
