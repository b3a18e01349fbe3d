//! Deploying a model: plan the schema change from the last deployed layout to
//! the model's, print it, and apply it in one transaction together with the
//! new revision. Only this module emits DDL.

mod plan;
mod platform;

pub use plan::{SchemaPlan, Step, StepKind, plan};
pub use platform::platform_layout;

use sea_orm::{ConnectionTrait, DbErr, Statement};

use crate::store::{Dialect, Layout, Store, StoreError};

pub use platform::{AUDIT, REVISIONS, SEQUENCES};

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
