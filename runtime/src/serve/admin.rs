//! Administration over the API: accounts, their roles and attributes, and the
//! roles the apps declare. Only the `admin` role may use these endpoints.

use axum::Json;
use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::auth::Caller;
use super::body::JsonBody;
use super::problem::{Problem, ProblemField, internal};
use crate::account::{AccountChange, AccountError, create_user, list_users, update_user};
use crate::oplog::{LogQuery, OPERATION_LOG, query_log};
use crate::session::LOGIN_LOG;
use crate::store::ColumnKind;

/// Refuses callers without the `admin` role (every administration endpoint).
pub(super) fn require_admin(caller: &Caller) -> Result<(), Problem> {
    if caller.user.is_admin() {
        Ok(())
    } else {
        Err(Problem::forbidden("only administrators may do this"))
    }
}

fn problem(error: AccountError) -> Problem {
    match error {
        AccountError::UsernameTaken(_) => Problem::new(StatusCode::CONFLICT, error.to_string()),
        AccountError::NotFound(_) => Problem::not_found(error.to_string()),
        AccountError::Invalid { field, message } => {
            let mut p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "the account is invalid");
            p.errors.push(ProblemField {
                field,
                code: "invalid".into(),
                message,
                row: None,
            });
            p
        }
        AccountError::Store(e) => internal(&e),
    }
}

/// Roles must exist in the deployed apps.
fn check_roles(state: &AppState, change: &AccountChange) -> Result<(), Problem> {
    let unknown: Vec<&String> = change
        .roles
        .iter()
        .flatten()
        .filter(|r| !state.permissions.knows(r))
        .collect();
    match unknown.first() {
        None => Ok(()),
        Some(role) => Err(problem(AccountError::Invalid {
            field: "roles".into(),
            message: format!("no app declares the role `{role}`"),
        })),
    }
}

/// `GET /api/v1/admin/users`
pub async fn users(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, Problem> {
    require_admin(&caller)?;
    let users = list_users(&state.store).await.map_err(|e| internal(&e))?;
    Ok(Json(json!({ "data": users })))
}

/// `POST /api/v1/admin/users`
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(change): JsonBody<AccountChange>,
) -> Result<Response, Problem> {
    require_admin(&caller)?;
    check_roles(&state, &change)?;
    let id = create_user(&state.store, change).await.map_err(problem)?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/v1/admin/users/{id}"))],
        Json(json!({ "id": id })),
    )
        .into_response())
}

/// `PATCH /api/v1/admin/users/{id}`
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
    JsonBody(change): JsonBody<AccountChange>,
) -> Result<StatusCode, Problem> {
    require_admin(&caller)?;
    let id: i64 = id
        .parse()
        .map_err(|_| Problem::not_found(format!("there is no user {id}")))?;
    check_roles(&state, &change)?;
    update_user(&state.store, id, change)
        .await
        .map_err(problem)?;
    // Roles or the disabled flag may have changed: sessions are checked afresh.
    state.sessions.clear();
    Ok(StatusCode::NO_CONTENT)
}

/// A log query from request parameters: the named columns as exact matches,
/// `from`/`to` (RFC 3339 times), `limit` (≤ 500, default 100) and `offset`.
fn log_query(
    params: &HashMap<String, String>,
    columns: &[(&'static str, ColumnKind)],
) -> Result<LogQuery, Problem> {
    let mut query = LogQuery {
        limit: 100,
        ..LogQuery::default()
    };
    for (name, value) in params {
        let bad = |what: &str| Problem::bad_request(format!("`{name}` must be {what}"));
        match name.as_str() {
            "from" | "to" => {
                let t = chrono::DateTime::parse_from_rfc3339(value)
                    .map_err(|_| bad("a time like 2026-11-23T08:00:00Z"))?
                    .with_timezone(&chrono::Utc);
                if name == "from" {
                    query.from = Some(t);
                } else {
                    query.to = Some(t);
                }
            }
            "limit" => {
                query.limit = value
                    .parse::<u64>()
                    .map_err(|_| bad("a whole number"))?
                    .clamp(1, 500)
            }
            "offset" => query.offset = value.parse().map_err(|_| bad("a whole number"))?,
            _ => {
                let Some((column, kind)) = columns.iter().find(|(c, _)| c == name) else {
                    return Err(Problem::bad_request(format!(
                        "the log cannot be filtered by `{name}`"
                    )));
                };
                let typed = match kind {
                    ColumnKind::Integer => value
                        .parse::<i64>()
                        .map(Value::from)
                        .map_err(|_| bad("a whole number"))?,
                    ColumnKind::Boolean => value
                        .parse::<bool>()
                        .map(Value::from)
                        .map_err(|_| bad("true or false"))?,
                    _ => Value::from(value.clone()),
                };
                query.equals.push((column, typed));
            }
        }
    }
    Ok(query)
}

const LOGIN_COLUMNS: &[(&str, ColumnKind)] = &[
    ("id", ColumnKind::Id),
    ("at", ColumnKind::DateTime),
    ("username", ColumnKind::Text),
    ("user_id", ColumnKind::Integer),
    ("ip", ColumnKind::Text),
    ("success", ColumnKind::Boolean),
];

const OPERATION_COLUMNS: &[(&str, ColumnKind)] = &[
    ("id", ColumnKind::Id),
    ("at", ColumnKind::DateTime),
    ("user_id", ColumnKind::Integer),
    ("method", ColumnKind::Text),
    ("path", ColumnKind::Text),
    ("app", ColumnKind::Text),
    ("entity", ColumnKind::Text),
    ("record_id", ColumnKind::Integer),
    ("status", ColumnKind::Integer),
    ("duration_us", ColumnKind::Integer),
    ("ip", ColumnKind::Text),
];

/// `GET /api/v1/admin/logs/logins?username=…&success=false&from=…`
pub async fn login_log(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    caller: Caller,
) -> Result<Json<Value>, Problem> {
    require_admin(&caller)?;
    let query = log_query(&params, LOGIN_COLUMNS)?;
    let rows = query_log(&state.store, LOGIN_LOG, LOGIN_COLUMNS, &query)
        .await
        .map_err(|e| internal(&e))?;
    Ok(Json(json!({ "data": rows })))
}

/// `GET /api/v1/admin/logs/operations?user_id=…&entity=…&status=…`
pub async fn operation_log(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    caller: Caller,
) -> Result<Json<Value>, Problem> {
    require_admin(&caller)?;
    let query = log_query(&params, OPERATION_COLUMNS)?;
    let mut rows = query_log(&state.store, OPERATION_LOG, OPERATION_COLUMNS, &query)
        .await
        .map_err(|e| internal(&e))?;
    for row in &mut rows {
        let us = row
            .remove("duration_us")
            .and_then(|v| v.as_i64())
            .unwrap_or(0);
        row.insert("duration_ms".into(), json!(us as f64 / 1000.0));
    }
    Ok(Json(json!({ "data": rows })))
}

/// `GET /api/v1/admin/roles`
pub async fn roles(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, Problem> {
    require_admin(&caller)?;
    let roles: Vec<Value> = state
        .permissions
        .roles()
        .iter()
        .map(|r| json!({"name": r.name, "label": r.label, "external": r.external}))
        .collect();
    Ok(Json(json!({ "data": roles })))
}
