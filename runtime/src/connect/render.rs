//! An operation over a record → the request it makes: the path template
//! rendered with minijinja (every value URL-encoded, so a value cannot add a
//! path segment or a query), `query` as text parameters, `body` as JSON; each
//! `=expression` evaluated over the record like an effect's value.

use std::sync::OnceLock;

use indexmap::IndexMap;
use minijinja::Environment;
use minijinja::value::{Serde, Value};
use serde_json::{Map, Value as Json};

use super::{ConnectorModel, OperationModel, Outgoing};
use crate::catalog::EntityModel;
use crate::write::prepare::{Context, Prepared, evaluate};

/// Why a request could not be made from a record.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RenderError {
    /// A path placeholder's field is empty.
    #[error("the path needs a value of `{0}`")]
    MissingPathValue(String),
    #[error("`={script}`: {message}")]
    Script { script: String, message: String },
    #[error("the path does not render: {0}")]
    Path(String),
}

/// Renders `op` of `connector` for `record` (with `id` when it is stored).
pub fn request(
    connector: &ConnectorModel,
    op: &OperationModel,
    entity: &EntityModel,
    record: &Prepared,
    id: Option<i64>,
    cx: &Context,
) -> Result<Outgoing, RenderError> {
    let path = path(&op.def.path, &record.values)?;
    let mut query = IndexMap::new();
    for (name, value) in &op.def.query {
        match mapped(op, entity, record, cx, value)? {
            Json::Null => {}
            Json::String(text) => {
                query.insert(name.clone(), text);
            }
            other => {
                query.insert(name.clone(), other.to_string());
            }
        }
    }
    let body = match &op.def.body {
        Some(fields) => {
            let mut out = Map::new();
            for (name, value) in fields {
                out.insert(name.clone(), mapped(op, entity, record, cx, value)?);
            }
            Some(Json::Object(out))
        }
        None => None,
    };
    Ok(Outgoing {
        app: connector.app.clone(),
        connector: connector.name.clone(),
        operation: op.name.clone(),
        entity: entity.name.clone(),
        record_id: id,
        method: op.def.method,
        base_url: connector.base_url.clone(),
        path,
        query,
        body,
        auth: connector.auth.clone(),
        timeout_ms: u64::try_from(connector.timeout.as_millis()).unwrap_or(u64::MAX),
    })
}

/// A mapped value: a literal as written, `=expression` evaluated, mappings
/// and lists value by value.
fn mapped(
    op: &OperationModel,
    entity: &EntityModel,
    record: &Prepared,
    cx: &Context,
    value: &Json,
) -> Result<Json, RenderError> {
    match value {
        Json::String(text) => match text.strip_prefix('=') {
            Some(source) => {
                let script_error = |message: String| RenderError::Script {
                    script: source.to_owned(),
                    message,
                };
                let script = op
                    .scripts
                    .get(source)
                    .ok_or_else(|| script_error("did not compile".into()))?;
                evaluate(entity, record, cx, script, &[]).map_err(script_error)
            }
            None => Ok(value.clone()),
        },
        Json::Object(map) => {
            let mut out = Map::new();
            for (key, inner) in map {
                out.insert(key.clone(), mapped(op, entity, record, cx, inner)?);
            }
            Ok(Json::Object(out))
        }
        Json::Array(items) => items
            .iter()
            .map(|inner| mapped(op, entity, record, cx, inner))
            .collect::<Result<Vec<_>, _>>()
            .map(Json::Array),
        other => Ok(other.clone()),
    }
}

/// Path templates: every value printed is percent-encoded as one path segment.
fn path_env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| crate::notify::render::escaping(encode))
}

/// Renders a path template over the record's values. The checker allows only
/// `{{ record.<field> }}` placeholders; each must hold a value.
pub(crate) fn path(template: &str, values: &Map<String, Json>) -> Result<String, RenderError> {
    let placeholders = trellis_engine::check::path_placeholders(template)
        .map_err(|(_, _, message)| RenderError::Path(message))?;
    for p in &placeholders {
        let empty = match values.get(&p.field) {
            None | Some(Json::Null) => true,
            Some(Json::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if empty {
            return Err(RenderError::MissingPathValue(p.field.clone()));
        }
    }
    if placeholders.is_empty() {
        return Ok(template.to_owned());
    }
    path_env()
        .render_str(
            template,
            minijinja::context! { record => Value::from(Serde(values)) },
        )
        .map_err(|e| RenderError::Path(e.to_string()))
}

/// Percent-encoding of everything but the unreserved characters of RFC 3986.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(byte));
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn path_values_are_one_encoded_segment_each() {
        let values = json!({"number": "SH/2026 #1?x=1", "n": 7, "gone": null})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            path("/shipments/{{ record.number }}/n/{{record.n}}", &values),
            Ok("/shipments/SH%2F2026%20%231%3Fx%3D1/n/7".to_owned())
        );
        assert_eq!(path("/plain", &values), Ok("/plain".to_owned()));
        assert_eq!(
            path("/x/{{ record.gone }}", &values),
            Err(RenderError::MissingPathValue("gone".into()))
        );
        assert_eq!(
            path("/x/{{ record.missing }}", &values),
            Err(RenderError::MissingPathValue("missing".into()))
        );
        assert_eq!(encode("上海 a~b"), "%E4%B8%8A%E6%B5%B7%20a~b");
    }
}
