//! The scheduled items for administrators: each one's schedule, next due
//! time and last result, its runs, and "run now".

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};

use super::AppState;
use super::admin::require_admin;
use super::auth::Caller;
use super::problem::{Problem, internal};
use crate::schedule::{Kind, runs};

/// `GET /api/v1/admin/schedules`: every scheduled item of the deployed apps.
pub async fn items(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, Problem> {
    require_admin(&caller)?;
    let stored = runs::items(&state.store).await.map_err(|e| internal(&e))?;
    let data: Vec<Value> = stored
        .into_iter()
        .filter_map(|mut row| {
            let name = row["name"].as_str()?.to_owned();
            let item = state.scheduler.item(&name)?;
            row["kind"] = json!(item.kind_name());
            match &item.kind {
                Kind::Alert(alert) => {
                    row["label"] = json!(alert.def.label);
                    row["entity"] = json!(format!("{}.{}", alert.entity.app, alert.entity.name));
                }
                Kind::Job { label, .. } => row["label"] = json!(label),
                Kind::DueTimes => {
                    row["label"] = json!({"en": "Workflow due times", "zh": "流程期限提醒"});
                }
            }
            Some(row)
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

/// `GET /api/v1/admin/schedules/{name}/runs?limit=`: the latest runs, newest first.
pub async fn runs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    caller: Caller,
) -> Result<Json<Value>, Problem> {
    require_admin(&caller)?;
    if state.scheduler.item(&name).is_none() {
        return Err(no_item(&name));
    }
    let limit = match params.get("limit") {
        None => 50,
        Some(text) => text
            .parse::<u64>()
            .map_err(|_| Problem::bad_request("`limit` must be a whole number"))?
            .clamp(1, 500),
    };
    let data = runs::runs(&state.store, &name, limit)
        .await
        .map_err(|e| internal(&e))?;
    Ok(Json(json!({ "data": data })))
}

/// `POST /api/v1/admin/schedules/{name}/run`: runs the item now and answers
/// with what the run did.
pub async fn run_now(
    State(state): State<AppState>,
    Path(name): Path<String>,
    caller: Caller,
) -> Result<Json<Value>, Problem> {
    require_admin(&caller)?;
    let report = state
        .scheduler
        .run_now(&name, caller.user.id)
        .await
        .map_err(|e| internal(&e))?
        .ok_or_else(|| no_item(&name))?;
    Ok(Json(json!(report)))
}

fn no_item(name: &str) -> Problem {
    Problem::not_found(format!("there is no scheduled item `{name}`"))
}
