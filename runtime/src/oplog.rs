//! The operation log: one row per logged API request (who, what, outcome, how long),
//! for administrators. Requests hand their entry to a background writer that
//! inserts in batches, so logging never adds a write to a request's latency.

use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, Order, Query};
use serde::Serialize;
use serde_json::Value as Json;
use tokio::sync::mpsc;

use crate::record::value::from_row;
use crate::store::{ColumnKind, Store, StoreError};

pub const OPERATION_LOG: &str = "trellis_operation_log";

/// Entries waiting to be written; beyond this, new ones are dropped (and counted)
/// rather than slowing requests down.
const QUEUE: usize = 10_000;
/// Rows per insert.
const BATCH: usize = 200;

/// One request, as logged.
#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    pub at: chrono::DateTime<chrono::Utc>,
    pub user_id: Option<i64>,
    pub method: String,
    pub path: String,
    pub app: Option<String>,
    pub entity: Option<String>,
    pub record_id: Option<i64>,
    pub status: u16,
    pub duration_ms: f64,
    pub ip: Option<String>,
}

/// Where requests leave their entries.
#[derive(Clone)]
pub struct OperationLog {
    sender: mpsc::Sender<Operation>,
}

impl OperationLog {
    /// Starts the background writer on the current Tokio runtime. It stops,
    /// after writing what it holds, when every `OperationLog` is dropped.
    pub fn start(store: Store) -> OperationLog {
        let (sender, mut receiver) = mpsc::channel::<Operation>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while receiver.recv_many(&mut batch, BATCH).await > 0 {
                if let Err(e) = write(&store, &batch).await {
                    tracing::error!(error = %e, rows = batch.len(), "operation log rows lost");
                }
                batch.clear();
            }
        });
        OperationLog { sender }
    }

    /// Queues an entry; a full queue drops it with a warning.
    pub fn record(&self, operation: Operation) {
        if self.sender.try_send(operation).is_err() {
            tracing::warn!("operation log queue full; entry dropped");
        }
    }
}

async fn write(store: &Store, batch: &[Operation]) -> Result<(), StoreError> {
    let dialect = store.dialect();
    let mut insert = Query::insert();
    insert.into_table(Alias::new(OPERATION_LOG)).columns(
        [
            "at",
            "user_id",
            "method",
            "path",
            "app",
            "entity",
            "record_id",
            "status",
            "duration_us",
            "ip",
        ]
        .map(Alias::new),
    );
    for op in batch {
        insert.values_panic([
            dialect.time(op.at).into(),
            sea_orm::Value::BigInt(op.user_id).into(),
            op.method.clone().into(),
            op.path.clone().into(),
            op.app.clone().into(),
            op.entity.clone().into(),
            sea_orm::Value::BigInt(op.record_id).into(),
            i64::from(op.status).into(),
            // Whole microseconds: an integer is exact on both databases.
            ((op.duration_ms * 1000.0).round() as i64).into(),
            op.ip.clone().into(),
        ]);
    }
    store.connection().execute(&insert).await?;
    Ok(())
}

/// What to find in a log: exact matches on the given columns, a time range,
/// newest first, one page.
#[derive(Debug, Default, Clone)]
pub struct LogQuery {
    pub equals: Vec<(&'static str, Json)>,
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    pub limit: u64,
    pub offset: u64,
}

/// Rows of a platform log table (`columns` with their kinds), newest first.
pub async fn query_log(
    store: &Store,
    table: &str,
    columns: &[(&str, ColumnKind)],
    query: &LogQuery,
) -> Result<Vec<serde_json::Map<String, Json>>, StoreError> {
    let dialect = store.dialect();
    let mut cond = Condition::all();
    for (column, value) in &query.equals {
        let kind = columns
            .iter()
            .find(|(c, _)| c == column)
            .map_or(ColumnKind::Text, |(_, k)| *k);
        cond = cond.add(
            Expr::col(Alias::new(*column)).eq(crate::record::value::to_sql(value, kind, dialect)),
        );
    }
    if let Some(from) = query.from {
        cond = cond.add(Expr::col(Alias::new("at")).gte(dialect.time(from)));
    }
    if let Some(to) = query.to {
        cond = cond.add(Expr::col(Alias::new("at")).lt(dialect.time(to)));
    }
    let mut q = Query::select();
    q.columns(columns.iter().map(|(c, _)| Alias::new(*c)))
        .from(Alias::new(table))
        .cond_where(cond)
        .order_by(Alias::new("id"), Order::Desc)
        .limit(query.limit)
        .offset(query.offset);
    let mut out = Vec::new();
    for row in store.connection().query_all(&q).await? {
        let mut entry = serde_json::Map::new();
        for (column, kind) in columns {
            entry.insert(
                (*column).to_owned(),
                from_row(&row, column, *kind, dialect)?,
            );
        }
        out.push(entry);
    }
    Ok(out)
}
