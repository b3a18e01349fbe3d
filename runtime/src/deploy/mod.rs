//! Deploying a model: plan the schema change from the last deployed layout to
//! the model's, print it, and apply it in one transaction together with the
//! new revision. Only this module emits DDL.

mod plan;
mod platform;

pub use plan::{SchemaPlan, Step, StepKind, plan};
pub use platform::platform_layout;

use sea_orm::{ConnectionTrait, DbErr, Statement};

use crate::store::{Dialect, Layout, Store, StoreError};

pub use platform::{AUDIT, DELEGATIONS, REVISIONS, SEQUENCES, WORKFLOW_HISTORY};

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

/// The layout recorded by the last deployment (empty on a new database).
pub async fn deployed_layout(store: &Store) -> Result<Layout, DeployError> {
    layout_in(store.connection(), store.dialect()).await
}

async fn layout_in<C: ConnectionTrait>(conn: &C, dialect: Dialect) -> Result<Layout, DeployError> {
    let exists_sql = match dialect {
        Dialect::Sqlite => format!(
            "SELECT 1 AS present FROM sqlite_master WHERE type = 'table' AND name = '{REVISIONS}'"
        ),
        Dialect::Postgres => format!(
            "SELECT 1 AS present FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = '{REVISIONS}'"
        ),
    };
    let backend = dialect.backend();
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
    let txn = begin_deployment(store).await?;
    apply(&txn, store.dialect(), plan, comment).await?;
    txn.commit().await.map_err(DeployError::Failed)?;
    Ok(())
}

/// A write transaction that no other deployment runs beside: on PostgreSQL,
/// nodes starting together over one database take turns on an advisory lock
/// (SQLite's write transaction excludes other writers already).
async fn begin_deployment(store: &Store) -> Result<sea_orm::DatabaseTransaction, DeployError> {
    let txn = store.begin_write().await?;
    if store.dialect() == Dialect::Postgres {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({DEPLOY_LOCK})"))
            .await
            .map_err(DeployError::Failed)?;
    }
    Ok(txn)
}

/// The advisory lock key of deployments ("TRELLIS" in ASCII).
const DEPLOY_LOCK: i64 = 0x0054_5245_4c4c_4953;

async fn apply(
    txn: &sea_orm::DatabaseTransaction,
    dialect: Dialect,
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
    let backend = dialect.backend();
    for sql in plan.steps.iter().flat_map(|s| &s.sql) {
        txn.execute_raw(Statement::from_string(backend, sql.clone()))
            .await
            .map_err(DeployError::Failed)?;
    }
    let layout = serde_json::to_string(&plan.target)
        .map_err(|e| DeployError::CorruptRevision(e.to_string()))?;
    let insert = dialect.numbered(&format!(
        "INSERT INTO {REVISIONS} (applied_at, layout, comment) VALUES (?, ?, ?)"
    ));
    let applied_at: sea_orm::Value = match dialect {
        Dialect::Sqlite => crate::store::now_text().into(),
        Dialect::Postgres => chrono::Utc::now().into(),
    };
    let values = [applied_at, layout.into(), comment.map(str::to_owned).into()];
    txn.execute_raw(Statement::from_sql_and_values(backend, insert, values))
        .await
        .map_err(DeployError::Failed)?;
    Ok(())
}

/// Plans from the deployed layout to `model` plus the platform tables.
pub async fn plan_model(
    store: &Store,
    model: &trellis_engine::CheckedModel,
    allow_destructive: bool,
) -> Result<SchemaPlan, DeployError> {
    let current = deployed_layout(store).await?;
    Ok(plan(
        &current,
        &wanted_layout(model)?,
        store.dialect(),
        allow_destructive,
    ))
}

fn wanted_layout(model: &trellis_engine::CheckedModel) -> Result<Layout, DeployError> {
    let mut wanted =
        Layout::of_model(model).map_err(|e| DeployError::Unsupported(e.to_string()))?;
    wanted.tables.extend(platform_layout().tables);
    Ok(wanted)
}

/// Plans from the deployed layout to `model` (plus the platform tables) and applies
/// it; a plan without steps records no revision. The plan is made inside the
/// deployment's transaction, so a node that waited for another deploys nothing twice.
pub async fn deploy_model(
    store: &Store,
    model: &trellis_engine::CheckedModel,
    allow_destructive: bool,
) -> Result<SchemaPlan, DeployError> {
    let wanted = wanted_layout(model)?;
    let txn = begin_deployment(store).await?;
    let current = layout_in(&txn, store.dialect()).await?;
    let plan = plan(&current, &wanted, store.dialect(), allow_destructive);
    if !plan.steps.is_empty() {
        apply(&txn, store.dialect(), &plan, None).await?;
    }
    txn.commit().await.map_err(DeployError::Failed)?;
    Ok(plan)
}
