//! Administration over the API: accounts, their roles and attributes, and the
//! roles the apps declare. Only the `admin` role may use these endpoints.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::auth::Caller;
use super::body::JsonBody;
use super::problem::{Problem, ProblemField, internal};
use crate::account::{AccountChange, AccountError, create_user, list_users, update_user};

fn require_admin(caller: &Caller) -> Result<(), Problem> {
    if caller.user.is_admin() {
        Ok(())
    } else {
        Err(Problem::forbidden(
            "only administrators may manage accounts",
        ))
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
    Ok(StatusCode::NO_CONTENT)
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
