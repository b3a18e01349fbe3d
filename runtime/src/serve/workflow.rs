//! The workflow API: taking an action on a record, the record's workflow
//! history, the built-in approval moves (withdraw, transfer, add-sign), the
//! caller's pending tasks and their delegations.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use trellis_engine::model::{Filter, Operation};

use super::AppState;
use super::auth::Caller;
use super::body::JsonBody;
use super::problem::{Problem, internal};
use super::records::{allowed, entity, record_id, record_json, warnings_json};
use crate::catalog::EntityModel;
use crate::read::ListQuery;
use crate::workflow::approvers::Me;
use crate::workflow::delegation;
use crate::workflow::history::Kind;
use crate::workflow::{Decision, Outcome};

/// The body of `POST …/{id}/actions/{action}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    #[serde(default)]
    pub comment: Option<String>,
    /// Values of the action's input fields.
    #[serde(default)]
    pub values: Map<String, Json>,
    #[serde(default)]
    pub version: Option<i64>,
}

/// The body of the built-in moves.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    #[serde(default)]
    pub comment: Option<String>,
    /// For transfer and add-sign: the user who takes over or signs first.
    #[serde(default)]
    pub to: Option<i64>,
}

/// A JSON body that may be left out (an action with nothing to say).
fn optional_body<T: serde::de::DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Problem::bad_request(format!("the body is not the JSON expected: {e}")))
}

/// The caller as an approver of records of `entity`.
pub async fn me(state: &AppState, caller: &Caller, entity: &EntityModel) -> Result<Me, Problem> {
    Ok(state.me(&caller.user, entity).await?)
}

fn outcome(outcome: Outcome) -> Response {
    let status = if outcome.completed {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let mut body = json!({"completed": outcome.completed, "record": record_json(outcome.record)});
    if !outcome.warnings.is_empty() {
        body["_warnings"] = warnings_json(&outcome.warnings);
    }
    (status, axum::Json(body)).into_response()
}

/// `POST /api/v1/{app}/{entity}/{id}/actions/{action}`: 200 with the record
/// when the action ran, 202 when an approval was recorded and others must still decide.
pub async fn act(
    State(state): State<AppState>,
    Path((app, name, id, action)): Path<(String, String, String, String)>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    let entity = entity(&state, &app, &name)?;
    allowed(&state, &caller, &entity, Operation::Read)?;
    let body: ActionBody = optional_body(&body)?;
    let decision = Decision {
        comment: body.comment,
        values: body.values,
        version: body.version,
    };
    let done = state
        .act(&caller.user, &entity, record_id(&id)?, &action, decision)
        .await?;
    Ok(outcome(done))
}

/// `GET /api/v1/{app}/{entity}/{id}/workflow`: the record's decisions, oldest first.
pub async fn history(
    State(state): State<AppState>,
    Path((app, name, id)): Path<(String, String, String)>,
    caller: Caller,
) -> Result<axum::Json<Json>, Problem> {
    let entity = entity(&state, &app, &name)?;
    let access = allowed(&state, &caller, &entity, Operation::Read)?;
    let id = record_id(&id)?;
    // Reading the record first: outside the caller's rows it does not exist.
    state.reader.get(&entity, id, &access).await?;
    let entries = state.workflows.history(&entity, id).await?;
    Ok(axum::Json(json!({ "data": entries })))
}

/// `POST /api/v1/{app}/{entity}/{id}/workflow/{move}`: `withdraw`, `transfer` or `add_sign`.
pub async fn r#move(
    State(state): State<AppState>,
    Path((app, name, id, what)): Path<(String, String, String, String)>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    let entity = entity(&state, &app, &name)?;
    let access = allowed(&state, &caller, &entity, Operation::Read)?;
    let body: MoveBody = optional_body(&body)?;
    let me = me(&state, &caller, &entity).await?;
    let id = record_id(&id)?;
    let comment = body.comment.as_deref();
    let kind = match what.as_str() {
        "withdraw" => {
            let done = state
                .workflows
                .withdraw(&entity, id, comment, &me, &access)
                .await?;
            return Ok(outcome(done));
        }
        "transfer" => Kind::Transfer,
        "add_sign" => Kind::AddSign,
        other => return Err(Problem::not_found(format!("no workflow move `{other}`"))),
    };
    let to = body
        .to
        .ok_or_else(|| Problem::bad_request("name the user with `to`"))?;
    let done = state
        .workflows
        .hand_over(&entity, id, kind, to, comment, &me, &access)
        .await?;
    Ok(outcome(done))
}

/// The actions the caller may take on a record, for `GET …/{id}`.
pub async fn allowed_actions(
    state: &AppState,
    caller: &Caller,
    entity: &EntityModel,
    record: &crate::record::Record,
) -> Result<Option<Json>, Problem> {
    if state.workflows.of(entity).is_none() {
        return Ok(None);
    }
    let me = me(state, caller, entity).await?;
    let actions = state.workflows.allowed(entity, record, &me).await?;
    Ok(Some(serde_json::to_value(actions).unwrap_or_default()))
}

/// Records considered per entity for the task list.
const TASK_CANDIDATES: u64 = 200;

/// `GET /api/v1/me/tasks`: records waiting for the caller's decision, with
/// the actions they may take, across every entity they may read.
pub async fn tasks(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Json>, Problem> {
    let mut out = Vec::new();
    for entity in state.catalog.entities() {
        let Some(access) = state
            .permissions
            .access(&caller.user, &entity, Operation::Read)
        else {
            continue;
        };
        let me = me(&state, &caller, &entity).await?;
        let Some((states, user_fields)) = state.workflows.task_filter(&entity, &me) else {
            continue;
        };
        let field = entity.state_field.clone().unwrap_or_default();
        let mut any = Vec::new();
        if !states.is_empty() {
            any.push(json!({ field.clone(): {"in": states} }));
        }
        let mut people: Vec<i64> = vec![me.user.id];
        people.extend(me.deputising.iter().map(|(p, _)| *p));
        for f in &user_fields {
            any.push(json!({ f.clone(): {"in": people} }));
        }
        let handed = crate::workflow::history::handed_to(
            state.store.connection(),
            &entity.app,
            &entity.name,
            me.user.id,
        )
        .await?;
        if !handed.is_empty() {
            any.push(json!({"id": {"in": handed}}));
        }
        if any.is_empty() {
            continue;
        }
        let mut filter = Map::new();
        filter.insert("or".into(), Json::Array(any));
        let query = ListQuery {
            filter: Some(Filter(filter)),
            sort: vec!["-updated_at".into()],
            limit: Some(TASK_CANDIDATES),
            ..ListQuery::default()
        };
        let page = state.reader.list(&entity, &query, &access).await?;
        for record in page.records {
            let actions = state.workflows.allowed(&entity, &record, &me).await?;
            if actions.is_empty() {
                continue;
            }
            out.push(json!({
                "app": entity.app,
                "entity": entity.name,
                "id": record.id,
                "state": record.values.get(&field),
                "record": record_json(record),
                "actions": actions,
            }));
        }
    }
    Ok(axum::Json(json!({ "data": out })))
}

/// The body of `POST /api/v1/me/delegations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegationBody {
    pub deputy: i64,
    pub starts_on: chrono::NaiveDate,
    pub ends_on: chrono::NaiveDate,
}

/// `POST /api/v1/me/delegations`: the caller's tasks go to a deputy between two dates.
pub async fn delegate(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<DelegationBody>,
) -> Result<Response, Problem> {
    if body.ends_on < body.starts_on {
        return Err(Problem::bad_request("the delegation ends before it starts"));
    }
    let exists = crate::account::exists(state.store.connection(), body.deputy)
        .await
        .map_err(|e| internal(&e))?;
    if body.deputy == caller.user.id || !exists {
        return Err(Problem::bad_request(
            "the deputy must be another, existing user",
        ));
    }
    delegation::create(
        &state.store,
        caller.user.id,
        body.deputy,
        body.starts_on,
        body.ends_on,
    )
    .await
    .map_err(|e| internal(&e))?;
    let echo = json!({"deputy": body.deputy, "starts_on": body.starts_on, "ends_on": body.ends_on});
    Ok((StatusCode::CREATED, axum::Json(echo)).into_response())
}

/// `GET /api/v1/me/delegations`: the caller's delegations, given and received.
pub async fn delegations(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Json>, Problem> {
    let data = delegation::list(&state.store, caller.user.id)
        .await
        .map_err(|e| internal(&e))?;
    Ok(axum::Json(json!({ "data": data })))
}

/// `DELETE /api/v1/me/delegations/{id}`: ends one of the caller's delegations.
pub async fn undelegate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<StatusCode, Problem> {
    let id = record_id(&id)?;
    let removed = delegation::remove(&state.store, caller.user.id, id)
        .await
        .map_err(|e| internal(&e))?;
    if !removed {
        return Err(Problem::not_found(format!("you have no delegation {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}
