//! Lookups: a form's current values → the operation's request, sent at once
//! (bounded by the connector's timeout) → the answer's values, by the
//! operation's `response` pointers, as field values of the entity. Nothing is
//! saved; the caller decides what to keep.

use serde_json::{Map, Value as Json};
use trellis_engine::check::MAX_TIMEOUT_SECONDS;
use trellis_engine::model::FieldType;

use super::render::{RenderError, request};
use super::{Environment, client};
use crate::catalog::{Catalog, EntityModel};
use crate::record::FieldError;
use crate::record::value::coerce;
use crate::write::prepare::{Context, Prepared};

/// Why a lookup gave no values.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// No such connector, operation, or no lookup of this entity.
    #[error("{0}")]
    NotFound(String),
    /// The values given cannot make the request.
    #[error("the values cannot make the request")]
    Invalid(Vec<FieldError>),
    /// The other system failed: down, too slow, an error status, an answer
    /// that is not JSON or does not fit.
    #[error("{0}")]
    Remote(String),
}

/// Calls the lookup `connector.operation` of `entity` with the form's
/// `values` and answers the fields it fills. Only fields for which
/// `writable` holds are answered.
#[allow(clippy::too_many_arguments)]
pub async fn lookup(
    catalog: &Catalog,
    env: &Environment,
    entity: &EntityModel,
    connector: &str,
    operation: &str,
    values: &Map<String, Json>,
    writable: &(dyn Fn(&str) -> bool + Sync),
    cx: &Context<'_>,
) -> Result<Map<String, Json>, LookupError> {
    let name = format!("{connector}.{operation}");
    let model = catalog
        .connectors()
        .get(&entity.app, connector)
        .ok_or_else(|| {
            LookupError::NotFound(format!(
                "app `{}` has no connector `{connector}`",
                entity.app
            ))
        })?;
    let op = model
        .operation(operation)
        .filter(|op| op.entity == entity.name && op.def.is_lookup())
        .ok_or_else(|| {
            LookupError::NotFound(format!("`{name}` is not a lookup of {}", entity.name))
        })?;
    let record = form_record(entity, values)?;
    let id = record.values.get("id").and_then(Json::as_i64);
    let out = request(&model, op, entity, &record, id, cx).map_err(|e| match e {
        RenderError::MissingPathValue(field) => LookupError::Invalid(vec![FieldError::new(
            &field,
            "required",
            format!("`{name}` needs a value here"),
        )]),
        other => LookupError::Invalid(vec![FieldError::new("", "script", other.to_string())]),
    })?;
    let cap = std::time::Duration::from_secs(MAX_TIMEOUT_SECONDS.unsigned_abs());
    let reply = client::send(&out, env, cap, Vec::new())
        .await
        .map_err(|e| {
            tracing::info!(connector = %name, error = %e, "a lookup failed");
            LookupError::Remote(match e {
                client::Failure::MissingVariable(_) => {
                    format!("`{name}` is not configured on this server: {e}")
                }
                client::Failure::Unreachable { message, .. } => {
                    format!("`{name}` did not answer: {message}")
                }
            })
        })?;
    if !reply.is_success() {
        tracing::info!(connector = %name, status = reply.status, url = %reply.url, "a lookup was refused");
        return Err(LookupError::Remote(format!(
            "`{name}` answered HTTP {}",
            reply.status
        )));
    }
    let answer: Json = serde_json::from_str(&reply.body).map_err(|_| {
        LookupError::Remote(format!("`{name}` answered with something that is not JSON"))
    })?;
    let mut filled = Map::new();
    for (field, pointer) in &op.def.response {
        let Some(model) = entity.fields.get(field) else {
            continue;
        };
        if !writable(field) {
            continue;
        }
        let value = match answer.pointer(pointer) {
            None | Some(Json::Null) => continue,
            Some(v) => as_field(v, model.def.kind),
        };
        let value = match coerce(field, model, &value) {
            Ok(v) => v,
            Err(e) if e.code == "type" => {
                return Err(LookupError::Remote(format!(
                    "the answer of `{name}` at `{pointer}` does not fit `{field}`: {}",
                    e.message
                )));
            }
            // Fits the type but not a rule of the field (a pattern, a length):
            // the form shows it, and saving it says what is wrong.
            Err(_) => value,
        };
        filled.insert(field.clone(), value);
    }
    Ok(filled)
}

/// The form's values as a record: each scalar field coerced (every problem
/// reported together), system values kept, anything else ignored.
fn form_record(entity: &EntityModel, values: &Map<String, Json>) -> Result<Prepared, LookupError> {
    let mut record = Prepared::default();
    let mut errors = Vec::new();
    for (name, value) in values {
        if let Some(field) = entity.fields.get(name) {
            match coerce(name, field, value) {
                Ok(v) => {
                    record.values.insert(name.clone(), v);
                }
                Err(e) => errors.push(e),
            }
        } else if trellis_engine::check::SYSTEM_FIELDS
            .iter()
            .any(|(n, _)| n == name)
        {
            record.values.insert(name.clone(), value.clone());
        }
    }
    if errors.is_empty() {
        Ok(record)
    } else {
        Err(LookupError::Invalid(errors))
    }
}

/// A scalar of an answer in the shape of a field: numbers and booleans are
/// text for text fields (registries send codes as numbers).
fn as_field(value: &Json, kind: FieldType) -> Json {
    let textual = matches!(
        kind,
        FieldType::Text
            | FieldType::LongText
            | FieldType::Email
            | FieldType::Phone
            | FieldType::Url
    );
    match value {
        Json::Number(_) | Json::Bool(_) if textual => Json::String(value.to_string()),
        other => other.clone(),
    }
}
