//! Deploying a model: plan the schema change from the last deployed layout to
//! the model's, print it, and apply it in one transaction together with the
//! new revision. Only this module emits DDL.

mod plan;

pub use plan::{SchemaPlan, Step, StepKind, plan};

use sea_orm::{ConnectionTrait, DbErr, Statement};

use crate::store::{Column, ColumnKind, Dialect, Layout, Store, StoreError, Table, TableIndex};

/// The platform's own table of deployments.
pub const REVISIONS: &str = "trellis_revisions";
/// The platform's audit trail: who changed which record, when, from what to what.
pub const AUDIT: &str = "trellis_audit";
pub use crate::write::numbering::SEQUENCES;

/// What can stop a deployment.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored layout of the last deployment is unreadable: {0}")]
    CorruptRevision(String),
    #[error("the plan has steps that cannot run: {0}")]
    Unsupported(String),
    #[error("deploying failed and nothing was changed: {0}")]
    Failed(DbErr),
}

/// The platform's own tables, laid out like any app's.
pub fn platform_layout() -> Layout {
    let mut revisions = Table::empty();
    for (name, kind, nullable) in [
        ("id", ColumnKind::Id, false),
        ("applied_at", ColumnKind::DateTime, false),
        ("layout", ColumnKind::Text, false),
        ("comment", ColumnKind::Text, true),
    ] {
        revisions
            .columns
            .insert(name.to_owned(), Column { kind, nullable });
    }
    let mut audit = Table::empty();
    for (name, kind, nullable) in [
        ("id", ColumnKind::Id, false),
        ("at", ColumnKind::DateTime, false),
        ("user_id", ColumnKind::Integer, true),
        ("app", ColumnKind::Text, false),
        ("entity", ColumnKind::Text, false),
        ("record_id", ColumnKind::Integer, false),
        ("operation", ColumnKind::Text, false),
        ("changes", ColumnKind::Text, false),
    ] {
        audit
            .columns
            .insert(name.to_owned(), Column { kind, nullable });
    }
    audit.indexes.insert(
        format!("{AUDIT}__record_idx"),
        TableIndex {
            columns: vec!["app".into(), "entity".into(), "record_id".into()],
            unique: false,
            condition: None,
        },
    );
    let mut sequences = Table::empty();
    for (name, kind, nullable) in [
        ("id", ColumnKind::Id, false),
        ("series", ColumnKind::Text, false),
        ("value", ColumnKind::Integer, false),
    ] {
        sequences
            .columns
            .insert(name.to_owned(), Column { kind, nullable });
    }
    sequences.indexes.insert(
        format!("{SEQUENCES}__series_key"),
        TableIndex {
            columns: vec!["series".into()],
            unique: true,
            condition: None,
        },
    );
    let mut layout = Layout::default();
    layout.tables.insert(REVISIONS.to_owned(), revisions);
    layout.tables.insert(AUDIT.to_owned(), audit);
    layout.tables.insert(SEQUENCES.to_owned(), sequences);
    layout
}

/// The layout recorded by the last deployment (empty on a new database).
pub async fn deployed_layout(store: &Store) -> Result<Layout, DeployError> {
    let conn = store.connection();
    let exists_sql = match store.dialect() {
        Dialect::Sqlite => format!(
            "SELECT 1 AS present FROM sqlite_master WHERE type = 'table' AND name = '{REVISIONS}'"
        ),
        Dialect::Postgres => format!(
            "SELECT 1 AS present FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = '{REVISIONS}'"
        ),
    };
    let backend = store.dialect().backend();
    if conn
        .query_one_raw(Statement::from_string(backend, exists_sql))
        .await
        .map_err(StoreError::from)?
        .is_none()
    {
        return Ok(Layout::default());
    }
    let last = format!("SELECT layout FROM {REVISIONS} ORDER BY id DESC LIMIT 1");
    let Some(row) = conn
        .query_one_raw(Statement::from_string(backend, last))
        .await
        .map_err(StoreError::from)?
    else {
        return Ok(Layout::default());
    };
    let text: String = row.try_get("", "layout").map_err(StoreError::from)?;
    serde_json::from_str(&text).map_err(|e| DeployError::CorruptRevision(e.to_string()))
}

/// Applies a plan and records its target layout as a new revision, all in one
/// transaction: a failure leaves the database as it was.
pub async fn deploy(
    store: &Store,
    plan: &SchemaPlan,
    comment: Option<&str>,
) -> Result<(), DeployError> {
    let blocked: Vec<&str> = plan
        .steps
        .iter()
        .filter(|s| s.kind == StepKind::Unsupported)
        .map(|s| s.description.as_str())
        .collect();
    if !blocked.is_empty() {
        return Err(DeployError::Unsupported(blocked.join("; ")));
    }
    let txn = store.begin_write().await?;
    let backend = store.dialect().backend();
    for sql in plan.steps.iter().flat_map(|s| &s.sql) {
        txn.execute_raw(Statement::from_string(backend, sql.clone()))
            .await
            .map_err(DeployError::Failed)?;
    }
    let layout = serde_json::to_string(&plan.target)
        .map_err(|e| DeployError::CorruptRevision(e.to_string()))?;
    let insert = match store.dialect() {
        Dialect::Sqlite => {
            format!("INSERT INTO {REVISIONS} (applied_at, layout, comment) VALUES (?, ?, ?)")
        }
        Dialect::Postgres => {
            format!("INSERT INTO {REVISIONS} (applied_at, layout, comment) VALUES ($1, $2, $3)")
        }
    };
    let now = crate::store::now_text();
    let applied_at: sea_orm::Value = match store.dialect() {
        Dialect::Sqlite => now.into(),
        Dialect::Postgres => chrono::Utc::now().into(),
    };
    let values = [applied_at, layout.into(), comment.map(str::to_owned).into()];
    txn.execute_raw(Statement::from_sql_and_values(backend, insert, values))
        .await
        .map_err(DeployError::Failed)?;
    txn.commit().await.map_err(DeployError::Failed)?;
    Ok(())
}

/// Plans from the deployed layout to `model` plus the platform tables.
pub async fn plan_model(
    store: &Store,
    model: &trellis_engine::CheckedModel,
    allow_destructive: bool,
) -> Result<SchemaPlan, DeployError> {
    let current = deployed_layout(store).await?;
    let mut wanted =
        Layout::of_model(model).map_err(|e| DeployError::Unsupported(e.to_string()))?;
    wanted.tables.extend(platform_layout().tables);
    Ok(plan(&current, &wanted, store.dialect(), allow_destructive))
}

/// Plans from the deployed layout to `model` (plus the platform tables) and applies
/// it; a plan without steps records no revision.
pub async fn deploy_model(
    store: &Store,
    model: &trellis_engine::CheckedModel,
    allow_destructive: bool,
) -> Result<SchemaPlan, DeployError> {
    let plan = plan_model(store, model, allow_destructive).await?;
    if !plan.steps.is_empty() {
        deploy(store, &plan, None).await?;
    }
    Ok(plan)
}
