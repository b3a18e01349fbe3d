//! Administration of outbound messaging: the configured channels (secrets
//! are written, never shown) and the push log of the outbox, with manual
//! re-push. Only the `admin` role may use these endpoints.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use super::admin::require_admin;
use super::auth::Caller;
use super::body::JsonBody;
use super::problem::{Problem, ProblemField, internal};
use crate::notify::channels::{self, ChannelChange, ChannelError};
use crate::notify::outbox::{self, OutboxQuery, Requeue};

fn no_channel(name: &str) -> Problem {
    Problem::not_found(format!("there is no channel `{name}`"))
}

/// `GET /api/v1/admin/channels`
pub async fn channels(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, Problem> {
    require_admin(&caller)?;
    let all = channels::list_channels(&state.store)
        .await
        .map_err(|e| internal(&e))?;
    let data: Vec<Value> = all.iter().map(channels::ChannelConfig::to_json).collect();
    Ok(Json(json!({ "data": data })))
}

/// `GET /api/v1/admin/channels/{name}`
pub async fn channel(
    State(state): State<AppState>,
    Path(name): Path<String>,
    caller: Caller,
) -> Result<Json<Value>, Problem> {
    require_admin(&caller)?;
    match channels::get_channel(&state.store, &name)
        .await
        .map_err(|e| internal(&e))?
    {
        Some(config) => Ok(Json(config.to_json())),
        None => Err(no_channel(&name)),
    }
}

/// `PUT /api/v1/admin/channels/{name}`: creates (201) or replaces (200) it.
pub async fn put_channel(
    State(state): State<AppState>,
    Path(name): Path<String>,
    caller: Caller,
    JsonBody(change): JsonBody<ChannelChange>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    require_admin(&caller)?;
    let created = channels::put_channel(&state.store, &name, change)
        .await
        .map_err(|e| match e {
            ChannelError::Invalid { field, message } => {
                let mut p =
                    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "the channel is invalid");
                p.errors.push(ProblemField {
                    field,
                    code: "invalid".into(),
                    message,
                    row: None,
                });
                p
            }
            ChannelError::Store(e) => internal(&e),
        })?;
    let config = channels::get_channel(&state.store, &name)
        .await
        .map_err(|e| internal(&e))?
        .ok_or_else(|| no_channel(&name))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(config.to_json())))
}

/// `DELETE /api/v1/admin/channels/{name}`
pub async fn delete_channel(
    State(state): State<AppState>,
    Path(name): Path<String>,
    caller: Caller,
) -> Result<StatusCode, Problem> {
    require_admin(&caller)?;
    if channels::delete_channel(&state.store, &name)
        .await
        .map_err(|e| internal(&e))?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_channel(&name))
    }
}

/// `GET /api/v1/admin/outbox?status=pending|delivered|failed&topic=&target=&limit=&offset=`
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    caller: Caller,
) -> Result<Json<Value>, Problem> {
    require_admin(&caller)?;
    let mut query = OutboxQuery {
        limit: 100,
        ..OutboxQuery::default()
    };
    for (name, value) in &params {
        let bad = |what: &str| Problem::bad_request(format!("`{name}` must be {what}"));
        match name.as_str() {
            "status" => {
                if ![outbox::PENDING, outbox::DELIVERED, outbox::FAILED].contains(&value.as_str()) {
                    return Err(bad("pending, delivered or failed"));
                }
                query.status = Some(value.clone());
            }
            "topic" => query.topic = Some(value.clone()),
            "target" => query.target = Some(value.clone()),
            "limit" => {
                query.limit = value
                    .parse::<u64>()
                    .map_err(|_| bad("a whole number"))?
                    .clamp(1, 500)
            }
            "offset" => query.offset = value.parse().map_err(|_| bad("a whole number"))?,
            _ => {
                return Err(Problem::bad_request(format!(
                    "the outbox cannot be filtered by `{name}`"
                )));
            }
        }
    }
    let (data, total) = outbox::list_messages(&state.store, &query)
        .await
        .map_err(|e| internal(&e))?;
    Ok(Json(json!({ "data": data, "total": total })))
}

fn message_id(id: &str) -> Result<i64, Problem> {
    id.parse()
        .map_err(|_| Problem::not_found(format!("there is no outbox message {id}")))
}

/// `GET /api/v1/admin/outbox/{id}`: the message, its payload and its attempts.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Value>, Problem> {
    require_admin(&caller)?;
    let number = message_id(&id)?;
    outbox::message(&state.store, number)
        .await
        .map_err(|e| internal(&e))?
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("there is no outbox message {id}")))
}

/// `POST /api/v1/admin/outbox/{id}/retry`: a delivered or failed message is
/// pushed again (202); a pending one is refused (409).
pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<(StatusCode, Json<Value>), Problem> {
    require_admin(&caller)?;
    let number = message_id(&id)?;
    match outbox::requeue(&state.store, number, Some(caller.user.id))
        .await
        .map_err(|e| internal(&e))?
    {
        Requeue::Requeued => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"id": number, "status": outbox::PENDING})),
        )),
        Requeue::AlreadyPending => Err(Problem::new(
            StatusCode::CONFLICT,
            format!("outbox message {id} is waiting for delivery already"),
        )),
        Requeue::NotFound => Err(Problem::not_found(format!(
            "there is no outbox message {id}"
        ))),
    }
}
