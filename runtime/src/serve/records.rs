//! The REST API generated from the model: for every entity of every app,
//! list, create, upsert, get, update, delete, aggregate and history, each
//! under the caller's permissions.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value as Json, json};
use trellis_engine::model::{Filter, Operation};

use super::AppState;
use super::auth::Caller;
use super::body::JsonBody;
use super::problem::Problem;
use crate::catalog::EntityModel;
use crate::read::aggregate::{Grouping, Measure};
use crate::read::{Access, ListQuery, Paging, Total};
use crate::record::{Record, Saved};
use crate::write::upsert::{MAX_UPSERT_ROWS, UpsertAccess, UpsertMode, Upserted};

type Params = HashMap<String, String>;

/// The entity a path names; an unknown one is a 404.
pub(super) fn entity(state: &AppState, app: &str, name: &str) -> Result<Arc<EntityModel>, Problem> {
    state
        .catalog
        .entity(app, name)
        .ok_or_else(|| Problem::not_found(format!("there is no entity {app}/{name}")))
}

/// The caller's access for `op`, or 403 when no role of theirs allows it.
pub(super) fn allowed(
    state: &AppState,
    caller: &Caller,
    entity: &EntityModel,
    op: Operation,
) -> Result<Access, Problem> {
    Ok(state.access(&caller.user, entity, op)?)
}

/// Record ids in paths are integers; anything else names no record.
pub(super) fn record_id(text: &str) -> Result<i64, Problem> {
    text.parse()
        .map_err(|_| Problem::not_found(format!("there is no record {text}")))
}

/// A record as the API returns it: its values, lines and system fields, and
/// the titles of linked records under `_titles`.
pub fn record_json(record: Record) -> Json {
    let mut values = record.values;
    if !record.titles.is_empty() {
        values.insert("_titles".into(), Json::Object(record.titles));
    }
    Json::Object(values)
}

/// A record a save answers with: [`record_json`], and the save's warnings
/// under `_warnings` when there are any.
pub fn saved_json(saved: Saved) -> Json {
    let mut body = record_json(saved.record);
    if !saved.warnings.is_empty()
        && let Some(values) = body.as_object_mut()
    {
        values.insert("_warnings".into(), warnings_json(&saved.warnings));
    }
    body
}

/// Warnings as the API gives them: `{field, code, message}` each.
pub fn warnings_json(warnings: &[crate::record::FieldError]) -> Json {
    serde_json::to_value(warnings).unwrap_or_default()
}

fn with_etag(status: StatusCode, saved: Saved) -> Response {
    etagged(status, saved.version, saved_json(saved))
}

fn etagged(status: StatusCode, version: i64, body: Json) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{version}\"")).ok();
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

fn filter_param(params: &Params) -> Result<Option<Filter>, Problem> {
    let Some(text) = params.get("filter").filter(|t| !t.trim().is_empty()) else {
        return Ok(None);
    };
    match serde_json::from_str::<Json>(text) {
        Ok(Json::Object(map)) => Ok(Some(Filter(map))),
        Ok(_) => Err(Problem::bad_request("`filter` must be a JSON object")),
        Err(e) => Err(Problem::bad_request(format!(
            "`filter` is not valid JSON: {e}"
        ))),
    }
}

/// A count parameter; the databases take counts as signed 64-bit integers.
fn number_param(params: &Params, name: &str) -> Result<Option<u64>, Problem> {
    params
        .get(name)
        .map(|v| {
            v.parse::<u64>()
                .ok()
                .filter(|n| i64::try_from(*n).is_ok())
                .ok_or_else(|| {
                    Problem::bad_request(format!(
                        "`{name}` must be a whole number up to {}, not `{v}`",
                        i64::MAX
                    ))
                })
        })
        .transpose()
}

/// A list query from request parameters: `filter`, `q`, `sort`, `limit`, and
/// `after` (a cursor) or `offset`; `total=exact` counts past the cap.
fn list_query(params: &Params) -> Result<ListQuery, Problem> {
    let paging = match (params.get("after"), number_param(params, "offset")?) {
        (Some(_), Some(_)) => {
            return Err(Problem::bad_request(
                "page with `after` (a cursor) or `offset`, not both",
            ));
        }
        (Some(cursor), None) => Paging::After(cursor.clone()),
        (None, Some(offset)) => Paging::Offset(offset),
        (None, None) => Paging::First,
    };
    Ok(ListQuery {
        filter: filter_param(params)?,
        search: params.get("q").cloned(),
        sort: params.get("sort").cloned().into_iter().collect(),
        limit: number_param(params, "limit")?,
        paging,
        exact_total: params.get("total").is_some_and(|t| t == "exact"),
    })
}

/// `GET /api/v1/{app}/{entity}`
pub async fn list(
    State(state): State<AppState>,
    Path((app, name)): Path<(String, String)>,
    Query(params): Query<Params>,
    caller: Caller,
) -> Result<axum::Json<Json>, Problem> {
    let entity = entity(&state, &app, &name)?;
    allowed(&state, &caller, &entity, Operation::Read)?;
    let query = list_query(&params)?;
    let page = state.list(&caller.user, &entity, &query).await?;
    let (total, exact) = match page.total {
        Total::Exact(n) => (n, true),
        Total::AtLeast(n) => (n, false),
    };
    Ok(axum::Json(json!({
        "data": page.records.into_iter().map(record_json).collect::<Vec<_>>(),
        "total": total,
        "total_exact": exact,
        "next": page.next,
    })))
}

/// `POST /api/v1/{app}/{entity}`
pub async fn create(
    State(state): State<AppState>,
    Path((app, name)): Path<(String, String)>,
    caller: Caller,
    JsonBody(input): JsonBody<Map<String, Json>>,
) -> Result<Response, Problem> {
    let entity = entity(&state, &app, &name)?;
    let record = state.create(&caller.user, &entity, input).await?;
    let location = format!("/api/v1/{app}/{name}/{}", record.id);
    let mut response = with_etag(StatusCode::CREATED, record);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The body of an upsert.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpsertBody {
    /// The fields that identify a record, e.g. `["external_no"]`.
    key: Vec<String>,
    records: Vec<Map<String, Json>>,
    #[serde(default)]
    mode: UpsertMode,
}

/// `POST /api/v1/{app}/{entity}/upsert`: each record updates the one whose
/// key fields hold its values (`update` permission) or is created (`create`).
/// 200 with one result per row; in `all_or_nothing` mode (the default) a
/// failed row writes nothing and is a 422 naming every failed row.
pub async fn upsert(
    State(state): State<AppState>,
    Path((app, name)): Path<(String, String)>,
    caller: Caller,
    JsonBody(body): JsonBody<UpsertBody>,
) -> Result<axum::Json<Json>, Problem> {
    let entity = entity(&state, &app, &name)?;
    let create = state
        .permissions
        .access(&caller.user, &entity, Operation::Create);
    let update = state
        .permissions
        .access(&caller.user, &entity, Operation::Update);
    if create.is_none() && update.is_none() {
        return Err(Problem::forbidden(format!(
            "your roles allow neither create nor update on {}",
            entity.name
        )));
    }
    if body.records.len() > MAX_UPSERT_ROWS {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} records; an upsert takes at most {MAX_UPSERT_ROWS}: send them in several requests",
                body.records.len()
            ),
        ));
    }
    let access = UpsertAccess {
        create: create.as_ref(),
        update: update.as_ref(),
    };
    let outcomes = state
        .writer
        .upsert_many(
            &entity,
            &body.key,
            body.records,
            body.mode,
            &caller.user.actor,
            access,
        )
        .await?;
    let results: Vec<Json> = outcomes
        .into_iter()
        .enumerate()
        .map(|(row, outcome)| match outcome {
            Ok(Upserted::Created(id)) => json!({"row": row, "status": "created", "id": id}),
            Ok(Upserted::Updated(id)) => json!({"row": row, "status": "updated", "id": id}),
            Err(e) => json!({"row": row, "status": "failed", "errors": e.to_field_errors()}),
        })
        .collect();
    Ok(axum::Json(json!({ "results": results })))
}

/// `GET /api/v1/{app}/{entity}/{id}`
pub async fn get(
    State(state): State<AppState>,
    Path((app, name, id)): Path<(String, String, String)>,
    caller: Caller,
) -> Result<Response, Problem> {
    let entity = entity(&state, &app, &name)?;
    let access = allowed(&state, &caller, &entity, Operation::Read)?;
    let record = state.reader.get(&entity, record_id(&id)?, &access).await?;
    let actions = super::workflow::allowed_actions(&state, &caller, &entity, &record).await?;
    let version = record.version;
    let mut body = record_json(record);
    if let (Some(actions), Some(values)) = (actions, body.as_object_mut()) {
        // The actions the caller may take now, beside the record's values.
        values.insert("_actions".into(), actions);
    }
    Ok(etagged(StatusCode::OK, version, body))
}

/// The version a PATCH starts from: `If-Match` or the body's `version`.
fn expected_version(headers: &HeaderMap, patch: &mut Map<String, Json>) -> Result<i64, Problem> {
    let from_body = patch.remove("version");
    if let Some(value) = headers.get(header::IF_MATCH) {
        let text = value.to_str().unwrap_or_default();
        let text = text.trim().trim_start_matches("W/").trim_matches('"');
        return text.parse().map_err(|_| {
            Problem::bad_request(format!(
                "If-Match must carry the record's version, not `{text}`"
            ))
        });
    }
    match from_body {
        Some(v) => v
            .as_i64()
            .ok_or_else(|| Problem::bad_request("`version` must be an integer")),
        None => Err(Problem::new(
            StatusCode::PRECONDITION_REQUIRED,
            "send the version you read, as If-Match or as `version`, so no change is lost",
        )),
    }
}

/// `PATCH /api/v1/{app}/{entity}/{id}`
pub async fn update(
    State(state): State<AppState>,
    Path((app, name, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    caller: Caller,
    JsonBody(mut patch): JsonBody<Map<String, Json>>,
) -> Result<Response, Problem> {
    let entity = entity(&state, &app, &name)?;
    allowed(&state, &caller, &entity, Operation::Update)?;
    let id = record_id(&id)?;
    let version = expected_version(&headers, &mut patch)?;
    let record = state
        .update(&caller.user, &entity, id, version, patch)
        .await?;
    Ok(with_etag(StatusCode::OK, record))
}

/// `DELETE /api/v1/{app}/{entity}/{id}`
pub async fn delete(
    State(state): State<AppState>,
    Path((app, name, id)): Path<(String, String, String)>,
    caller: Caller,
) -> Result<StatusCode, Problem> {
    let entity = entity(&state, &app, &name)?;
    allowed(&state, &caller, &entity, Operation::Delete)?;
    state.delete(&caller.user, &entity, record_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/{app}/{entity}/{id}/history`
pub async fn history(
    State(state): State<AppState>,
    Path((app, name, id)): Path<(String, String, String)>,
    caller: Caller,
) -> Result<axum::Json<Json>, Problem> {
    let entity = entity(&state, &app, &name)?;
    let access = allowed(&state, &caller, &entity, Operation::Read)?;
    let changes = state
        .reader
        .history(&entity, record_id(&id)?, &access)
        .await?;
    Ok(axum::Json(json!({ "data": changes })))
}

/// `GET /api/v1/{app}/{entity}/aggregate?measure=count,sum:amount&group_by=stage`
pub async fn aggregate(
    State(state): State<AppState>,
    Path((app, name)): Path<(String, String)>,
    Query(params): Query<Params>,
    caller: Caller,
) -> Result<axum::Json<Json>, Problem> {
    let entity = entity(&state, &app, &name)?;
    let access = allowed(&state, &caller, &entity, Operation::Read)?;
    let list = |key: &str| -> Vec<String> {
        params
            .get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut measure_names = list("measure");
    if measure_names.is_empty() {
        measure_names.push("count".into());
    }
    let measures = measure_names
        .iter()
        .map(|m| Measure::parse(m))
        .collect::<Result<Vec<_>, _>>()?;
    let group_names = list("group_by");
    let groupings = group_names
        .iter()
        .map(|g| Grouping::parse(g))
        .collect::<Result<Vec<_>, _>>()?;
    let filter = filter_param(&params)?;
    let groups = state
        .reader
        .aggregate(&entity, &measures, &groupings, filter.as_ref(), &access)
        .await?;
    let data: Vec<Json> = groups
        .into_iter()
        .map(|g| {
            let key: Map<String, Json> = group_names.iter().cloned().zip(g.keys).collect();
            let values: Map<String, Json> = measure_names.iter().cloned().zip(g.values).collect();
            json!({"key": key, "values": values})
        })
        .collect();
    Ok(axum::Json(json!({ "data": data })))
}

/// The most records one export holds; more must be narrowed by a filter.
const EXPORT_CAP: u64 = 100_000;

/// `GET /api/v1/{app}/{entity}/export?filter=…&q=…&sort=…`: the matching
/// records as CSV (UTF-8 with a byte-order mark, so spreadsheets read Chinese
/// text right), under the caller's export permission. Links give the id and,
/// in a second column, the linked record's title; several values are joined by `; `.
pub async fn export(
    State(state): State<AppState>,
    Path((app, name)): Path<(String, String)>,
    Query(params): Query<Params>,
    caller: Caller,
) -> Result<Response, Problem> {
    let entity = entity(&state, &app, &name)?;
    let access = allowed(&state, &caller, &entity, Operation::Export)?;
    let mut query = ListQuery {
        limit: Some(crate::read::MAX_PAGE),
        paging: Paging::First,
        exact_total: true,
        ..list_query(&params)?
    };
    let first = state.reader.list(&entity, &query, &access).await?;
    if let Total::Exact(n) = first.total
        && n > EXPORT_CAP
    {
        return Err(Problem::bad_request(format!(
            "{n} records match; an export holds at most {EXPORT_CAP}: narrow the filter"
        )));
    }
    let columns = export_columns(&entity, &access);
    let mut out = csv::Writer::from_writer(b"\xEF\xBB\xBF".to_vec());
    let header = columns.iter().map(|(name, _)| name.as_str());
    out.write_record(header)
        .map_err(|e| super::problem::internal(&e))?;
    let mut page = first;
    query.exact_total = false;
    loop {
        for record in &page.records {
            let cells = columns.iter().map(|(_, cell)| cell.text(record));
            out.write_record(cells.collect::<Vec<_>>())
                .map_err(|e| super::problem::internal(&e))?;
        }
        let Some(next) = page.next.take() else { break };
        query.paging = Paging::After(next);
        page = state.reader.list(&entity, &query, &access).await?;
    }
    let body = out
        .into_inner()
        .map_err(|e| super::problem::internal(&e.to_string()))?;
    let disposition = format!(
        "attachment; filename=\"{}-{}.csv\"",
        entity.app, entity.name
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// What one export column shows of a record.
enum Cell {
    Value(String),
    Title(String),
}

impl Cell {
    fn text(&self, record: &Record) -> String {
        let value = match self {
            Cell::Value(field) => record.values.get(field),
            Cell::Title(field) => record.titles.get(field),
        };
        match value {
            None | Some(Json::Null) => String::new(),
            Some(Json::String(s)) => s.clone(),
            Some(Json::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join("; "),
            Some(other) => other.to_string(),
        }
    }
}

/// The id, every field the caller may see (a link's title beside it), and the
/// creation and change times. Line items are left out: they are rows of their own.
fn export_columns(entity: &EntityModel, access: &Access) -> Vec<(String, Cell)> {
    let mut columns = vec![("id".to_owned(), Cell::Value("id".into()))];
    for (name, field) in &entity.fields {
        if access.hides(name) {
            continue;
        }
        columns.push((name.clone(), Cell::Value(name.clone())));
        if field.target_table.is_some() {
            columns.push((format!("{name}.title"), Cell::Title(name.clone())));
        }
    }
    for system in ["created_at", "updated_at"] {
        columns.push((system.to_owned(), Cell::Value(system.into())));
    }
    columns
}
