//! The signed-in user's in-app notifications: list, mark one or all read.
//! Another user's notification is answered like a missing one.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Caller;
use super::problem::{Problem, internal};
use crate::notify::inbox::{self, InboxQuery};

/// `GET /api/v1/me/notifications?unread=true&limit=&offset=` (limit ≤ 200, default 50).
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    caller: Caller,
) -> Result<Json<Value>, Problem> {
    let mut query = InboxQuery {
        limit: 50,
        ..InboxQuery::default()
    };
    for (name, value) in &params {
        let bad = |what: &str| Problem::bad_request(format!("`{name}` must be {what}"));
        match name.as_str() {
            "unread" => query.unread_only = value.parse().map_err(|_| bad("true or false"))?,
            "limit" => {
                query.limit = value
                    .parse::<u64>()
                    .map_err(|_| bad("a whole number"))?
                    .clamp(1, 200)
            }
            "offset" => query.offset = value.parse().map_err(|_| bad("a whole number"))?,
            _ => {
                return Err(Problem::bad_request(format!(
                    "unknown parameter `{name}`: use unread, limit, offset"
                )));
            }
        }
    }
    let page = inbox::list(&state.store, caller.user.id, &query)
        .await
        .map_err(|e| internal(&e))?;
    Ok(Json(
        json!({"data": page.data, "total": page.total, "unread": page.unread}),
    ))
}

/// `POST /api/v1/me/notifications/{id}/read`
pub async fn read_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<StatusCode, Problem> {
    let missing = || Problem::not_found(format!("you have no notification {id}"));
    let number: i64 = id.parse().map_err(|_| missing())?;
    let found = inbox::mark_read(&state.store, caller.user.id, number)
        .await
        .map_err(|e| internal(&e))?;
    if found {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(missing())
    }
}

/// `POST /api/v1/me/notifications/read`: marks every one read.
pub async fn read_all(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, Problem> {
    let marked = inbox::mark_all_read(&state.store, caller.user.id)
        .await
        .map_err(|e| internal(&e))?;
    Ok(Json(json!({ "marked": marked })))
}
