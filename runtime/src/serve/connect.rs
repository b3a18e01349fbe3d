//! `POST /api/v1/{app}/{entity}/lookup/{connector}/{operation}`: a form asks a
//! connector's lookup for values (a registry search by name fills a customer's
//! credit code). The body is the form's current field values; the answer is
//! `{"values": {field: value}}`, nothing saved. The caller needs create or
//! update permission on the entity and gets only fields they may write. When
//! the other system fails, the answer is 502 with what went wrong.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Map, Value as Json, json};
use trellis_engine::model::Operation;

use super::AppState;
use super::auth::Caller;
use super::body::JsonBody;
use super::problem::Problem;
use super::records::entity;
use crate::connect::LookupError;
use crate::read::Access;
use crate::record::RecordError;

pub async fn lookup(
    State(state): State<AppState>,
    Path((app, name, connector, operation)): Path<(String, String, String, String)>,
    caller: Caller,
    JsonBody(values): JsonBody<Map<String, Json>>,
) -> Result<axum::Json<Json>, Problem> {
    let entity = entity(&state, &app, &name)?;
    let writes: Vec<Access> = [Operation::Create, Operation::Update]
        .into_iter()
        .filter_map(|op| state.permissions.access(&caller.user, &entity, op))
        .collect();
    if writes.is_empty() {
        return Err(Problem::forbidden(format!(
            "your roles do not allow create or update on {}",
            entity.name
        )));
    }
    let writable = |field: &str| {
        let declared = entity
            .fields
            .get(field)
            .is_some_and(|f| f.def.computed.is_none() && !f.def.read_only)
            && entity.state_field.as_deref() != Some(field);
        declared
            && writes
                .iter()
                .any(|a| !a.hides(field) && !a.is_read_only(field))
    };
    let cx = state.writer.context(&caller.user.actor, false);
    let filled = crate::connect::lookup(
        &state.catalog,
        &state.environment,
        &entity,
        &connector,
        &operation,
        &values,
        &writable,
        &cx,
    )
    .await
    .map_err(|e| match e {
        LookupError::NotFound(detail) => Problem::not_found(detail),
        LookupError::Invalid(errors) => RecordError::Invalid(errors).into(),
        LookupError::Remote(detail) => Problem::new(StatusCode::BAD_GATEWAY, detail),
    })?;
    Ok(axum::Json(json!({ "values": filled })))
}
