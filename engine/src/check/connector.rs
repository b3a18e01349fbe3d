//! Checks of connectors (`connectors/<name>.yaml`) and of the `push` effects
//! that use them: addresses and paths that can work, secrets kept out of the
//! model, mappings whose expressions compile over the operation's entity, and
//! lookups that fill only fields people may write.

use serde_json::Value;

use super::info::EntityInfo;
use super::{Ctx, duration_seconds};
use crate::diagnostic::Code;
use crate::load::{Item, valid_name};
use crate::model::{Connector, ConnectorAuth, FieldType, Push};
use crate::schema::FileKind;
use crate::source::{SourceFile, escape, pointer};

/// The longest request a connector may wait for: lookups answer within the
/// API's 30-second request limit.
pub const MAX_TIMEOUT_SECONDS: i64 = 25;

/// One `{{ record.<field> }}` placeholder of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// Where the field's name starts in the template, in characters.
    pub offset: usize,
    pub field: String,
}

/// The placeholders of a path template, or where and why it is malformed.
/// Only `{{ record.<field> }}` is allowed, so every value a path carries is a
/// field the checker knows.
/// An error is (offset, length, message), in characters.
pub fn path_placeholders(template: &str) -> Result<Vec<Placeholder>, (usize, usize, String)> {
    let mut out = Vec::new();
    let mut rest = template;
    let mut consumed = 0;
    let chars = |s: &str| s.chars().count();
    loop {
        let next = ["{{", "{%", "{#", "}}"]
            .iter()
            .filter_map(|m| rest.find(m).map(|i| (i, *m)))
            .min();
        let Some((at, marker)) = next else {
            return Ok(out);
        };
        let start = consumed + chars(&rest[..at]);
        match marker {
            "{{" => {}
            "}}" => return Err((start, 2, "`}}` closes no placeholder".into())),
            _ => {
                return Err((
                    start,
                    2,
                    format!("`{marker}` has no place in a path: write `{{{{ record.<field> }}}}`"),
                ));
            }
        }
        let inside = &rest[at + 2..];
        let Some(end) = inside.find("}}") else {
            return Err((start, 2, "`{{` is never closed with `}}`".into()));
        };
        let expr = &inside[..end];
        let lead = chars(&expr[..expr.len() - expr.trim_start().len()]);
        let name = match expr.trim().strip_prefix("record.") {
            Some(name) if valid_name(name) => name,
            _ => {
                return Err((
                    start,
                    chars(expr) + 4,
                    format!(
                        "`{{{{{expr}}}}}` is not a placeholder of a path: write `{{{{ record.<field> }}}}`"
                    ),
                ));
            }
        };
        out.push(Placeholder {
            offset: start + 2 + lead + "record.".len(),
            field: name.to_owned(),
        });
        let skip = at + 2 + end + 2;
        consumed += chars(&rest[..skip]);
        rest = &rest[skip..];
    }
}

/// The environment variable whose value replaces a connector's `base_url`.
pub fn url_variable(connector: &str) -> String {
    format!("TRELLIS_CONNECTOR_{}_URL", connector.to_ascii_uppercase())
}

/// Whether a text is the name of an environment variable (`ERP_TOKEN`).
fn is_variable_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

pub(super) fn check_connector(ctx: &mut Ctx, item: &Item<Connector>) {
    let file = &*item.file;
    let c = &item.value;
    base_url(ctx, file, &c.base_url);
    match &c.auth {
        ConnectorAuth::None => {}
        ConnectorAuth::Bearer(b) => variable(ctx, file, "/auth/bearer/token_env", &b.token_env),
        ConnectorAuth::Basic(b) => {
            variable(ctx, file, "/auth/basic/username_env", &b.username_env);
            variable(ctx, file, "/auth/basic/password_env", &b.password_env);
        }
        ConnectorAuth::Header(h) => {
            let token = !h.name.is_empty()
                && h.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !token {
                ctx.push(
                    file.error(
                        Code::InvalidValue,
                        "/auth/header/name",
                        format!("`{}` is not an HTTP header name", h.name),
                    )
                    .with_help("letters, digits and `-`: `X-Api-Key`"),
                );
            }
            variable(ctx, file, "/auth/header/value_env", &h.value_env);
        }
    }
    if let Some(timeout) = &c.timeout {
        match duration_seconds(timeout) {
            None => ctx.duration(file, "/timeout", timeout),
            Some(s) if !(1..=MAX_TIMEOUT_SECONDS).contains(&s) => ctx.push(
                file.error(
                    Code::InvalidValue,
                    "/timeout",
                    format!("a connector waits 1s to {MAX_TIMEOUT_SECONDS}s, not `{timeout}`"),
                )
                .with_help("lookups answer within the API's 30-second request limit"),
            ),
            Some(_) => {}
        }
    }
    for (name, op) in &c.operations {
        let at = pointer(["operations", name]);
        if !valid_name(name) {
            ctx.push(file.key_error(
                Code::InvalidName,
                &at,
                format!("`{name}` is not a valid operation name"),
            ));
        }
        let entity = ctx.entity(file, &format!("{at}/entity"), &op.entity);
        let entity = match entity {
            Some(e) if e.app != ctx.app_name => {
                ctx.push(
                    file.error(
                        Code::ConnectorMismatch,
                        &format!("{at}/entity"),
                        format!("`{}` belongs to app `{}`", op.entity, e.app),
                    )
                    .with_help("an operation works on an entity of its own app; declare the connector in that app"),
                );
                None
            }
            other => other,
        };
        path(ctx, file, &format!("{at}/path"), &op.path, entity);
        if op.body.is_some() && !op.method.has_body() {
            ctx.push(
                file.key_error(
                    Code::ConnectorRequest,
                    &format!("{at}/body"),
                    format!("a {} request has no body", op.method.as_str()),
                )
                .with_help("send values as `query`, or use POST, PUT or PATCH"),
            );
        }
        let Some(entity) = entity else { continue };
        let vars = Ctx::record_variables(&entity.fields);
        for (key, value) in &op.query {
            let qat = format!("{at}/query/{}", escape(key));
            if value.is_object() || value.is_array() {
                ctx.push(
                    file.error(
                        Code::ConnectorRequest,
                        &qat,
                        "a query parameter holds one value",
                    )
                    .with_help("a literal or an `=expression`"),
                );
                continue;
            }
            mapped(ctx, file, &qat, value, &vars);
        }
        for (key, value) in op.body.iter().flatten() {
            mapped(
                ctx,
                file,
                &format!("{at}/body/{}", escape(key)),
                value,
                &vars,
            );
        }
        response(ctx, file, &at, op, entity);
    }
}

fn base_url(ctx: &mut Ctx, file: &SourceFile, url: &str) {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split('/').next().unwrap_or_default());
    let problem = match (rest, host) {
        (None, _) => Some("a base URL starts with `https://` or `http://`"),
        (_, Some(host)) if host.contains('@') => {
            ctx.push(
                file.error(
                    Code::SecretInModel,
                    "/base_url",
                    "the base URL carries credentials",
                )
                .with_help("keep secrets in the environment: use `auth` with `basic` or `bearer`"),
            );
            return;
        }
        (_, Some("")) => Some("the base URL names no host"),
        _ if url.contains(['?', '#']) => Some(
            "a base URL has no query or fragment; give parameters under an operation's `query`",
        ),
        _ if url.chars().any(char::is_whitespace) || url.contains("{{") => {
            Some("a base URL is a plain address, without spaces or placeholders")
        }
        _ => None,
    };
    if let Some(problem) = problem {
        ctx.push(
            file.error(
                Code::ConnectorRequest,
                "/base_url",
                format!("`{url}` is not a base URL"),
            )
            .with_help(problem),
        );
    }
}

fn variable(ctx: &mut Ctx, file: &SourceFile, ptr: &str, name: &str) {
    if !is_variable_name(name) {
        ctx.push(
            file.error(
                Code::SecretInModel,
                ptr,
                format!("`{name}` is not the name of an environment variable"),
            )
            .with_label("a secret does not belong in the model")
            .with_help(
                "name the server's variable that holds it (`ERP_TOKEN`): capitals, digits and `_`",
            ),
        );
    }
}

fn path(ctx: &mut Ctx, file: &SourceFile, ptr: &str, template: &str, entity: Option<&EntityInfo>) {
    if !template.starts_with('/') {
        ctx.push(
            file.error(
                Code::ConnectorRequest,
                ptr,
                format!("`{template}` does not start with `/`"),
            )
            .with_help("the path follows the base URL: `/shipments/{{ record.number }}`"),
        );
    }
    if template.contains(['?', '#']) {
        ctx.push(
            file.error(
                Code::ConnectorRequest,
                ptr,
                "a path has no query or fragment",
            )
            .with_help("give query parameters under `query`"),
        );
    }
    let located = |ctx: &mut Ctx, offset: usize, d: crate::diagnostic::Diagnostic, len: usize| {
        let d = match file.locate_in_value(ptr, template, offset) {
            Some(span) => file.at(
                d,
                crate::diagnostic::Span {
                    len: len.max(1) as u32,
                    ..span
                },
            ),
            None => d,
        };
        ctx.push(d);
    };
    match path_placeholders(template) {
        Err((offset, len, message)) => {
            let d = file.error(Code::ConnectorRequest, ptr, message);
            located(ctx, offset, d, len);
        }
        Ok(placeholders) => {
            let Some(entity) = entity else { return };
            for p in placeholders {
                match entity.fields.get(&p.field) {
                    None => {
                        let d = file
                            .error(
                                Code::UnknownField,
                                ptr,
                                format!("unknown field `{}`", p.field),
                            )
                            .with_label(format!("`{}` has no such field", entity.name))
                            .suggest(&p.field, entity.fields.keys().map(String::as_str));
                        located(ctx, p.offset, d, p.field.chars().count());
                    }
                    Some(f) if matches!(f.kind, FieldType::Table | FieldType::Json) => {
                        let d = file.error(
                            Code::WrongFieldType,
                            ptr,
                            format!("`{}` holds more than one value; a path takes one", p.field),
                        );
                        located(ctx, p.offset, d, p.field.chars().count());
                    }
                    Some(_) => {}
                }
            }
        }
    }
}

/// A mapped value: a literal, an `=expression` over the record, or (in a
/// body) a mapping or list of those.
fn mapped(ctx: &mut Ctx, file: &SourceFile, ptr: &str, value: &Value, vars: &[&str]) {
    match value {
        Value::String(text) => {
            if let Some(expr) = text.strip_prefix('=') {
                ctx.inline_script(file, ptr, expr, 1, vars);
            } else if text.starts_with('$') {
                ctx.push(
                    file.error(
                        Code::UnknownVariable,
                        ptr,
                        format!("`{text}` is not a value of a connector mapping"),
                    )
                    .with_help("write an expression: `=today`, `=now`, `=user.id`"),
                );
            }
        }
        Value::Object(map) => {
            for (key, inner) in map {
                mapped(ctx, file, &format!("{ptr}/{}", escape(key)), inner, vars);
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                mapped(ctx, file, &format!("{ptr}/{i}"), inner, vars);
            }
        }
        _ => {}
    }
}

fn response(
    ctx: &mut Ctx,
    file: &SourceFile,
    at: &str,
    op: &crate::model::ConnectorOperation,
    entity: &EntityInfo,
) {
    let declared = ctx.app.entities.get(&entity.name).map(|e| &e.value);
    for (field, target) in &op.response {
        let rat = format!("{at}/response/{}", escape(field));
        if !target.is_empty() && !target.starts_with('/') {
            ctx.push(
                file.error(
                    Code::ConnectorRequest,
                    &rat,
                    format!("`{target}` is not a JSON pointer"),
                )
                .with_help("point into the answer from its root: `/data/0/credit_code`"),
            );
        }
        let Some(info) = ctx.field(file, &rat, &entity.fields, field, &entity.name) else {
            continue;
        };
        let def = declared.and_then(|e| e.fields.get(field));
        let why = if info.system {
            Some("is kept by the platform")
        } else if entity.state_field.as_deref() == Some(field) {
            Some("is the state field; only actions change it")
        } else if info.kind == FieldType::Table {
            Some("is a table of lines")
        } else if def.is_some_and(|d| d.computed.is_some()) {
            Some("is computed")
        } else if def.is_some_and(|d| d.read_only) {
            Some("is read-only")
        } else {
            None
        };
        if let Some(why) = why {
            ctx.push(
                file.key_error(
                    Code::ConnectorMismatch,
                    &rat,
                    format!("`{field}` {why}; a lookup fills fields people may write"),
                )
                .with_label("no form can take this value"),
            );
        }
    }
}

/// Checks a `push` effect on records of `entity`.
pub(super) fn check_push(
    ctx: &mut Ctx,
    file: &SourceFile,
    at: &str,
    push: &Push,
    entity: &EntityInfo,
) {
    let Some(connector) = ctx.app.connectors.get(&push.connector) else {
        if !ctx
            .app
            .broken
            .contains(&(FileKind::Connector, push.connector.clone()))
        {
            let known: Vec<&str> = ctx.app.connectors.keys().map(String::as_str).collect();
            ctx.push(
                file.error(
                    Code::UnknownName,
                    &format!("{at}/connector"),
                    format!("unknown connector `{}`", push.connector),
                )
                .with_label("no file of this name under `connectors/`")
                .suggest(&push.connector, known.iter().copied())
                .with_help_if_none(if known.is_empty() {
                    "declare it in `connectors/<name>.yaml`".to_owned()
                } else {
                    format!("the connectors of this app: {}", known.join(", "))
                }),
            );
        }
        return;
    };
    let oat = format!("{at}/operation");
    let Some(op) = connector.value.operations.get(&push.operation) else {
        let known: Vec<&str> = connector
            .value
            .operations
            .keys()
            .map(String::as_str)
            .collect();
        ctx.push(
            file.error(
                Code::UnknownName,
                &oat,
                format!(
                    "connector `{}` has no operation `{}`",
                    push.connector, push.operation
                ),
            )
            .suggest(&push.operation, known),
        );
        return;
    };
    let (app, name) = super::info::split_ref(&ctx.app_name, &op.entity);
    if (app.as_str(), name.as_str()) != (entity.app.as_str(), entity.name.as_str()) {
        ctx.push(
            file.error(
                Code::ConnectorMismatch,
                &oat,
                format!(
                    "`{}.{}` works on `{}`, not on `{}`",
                    push.connector, push.operation, op.entity, entity.name
                ),
            )
            .with_help("a push sends the record of its own workflow; give the operation `entity` of this one"),
        );
    }
    if op.is_lookup() {
        ctx.push(
            file.error(
                Code::ConnectorMismatch,
                &oat,
                format!(
                    "`{}.{}` is a lookup (it has a `response`)",
                    push.connector, push.operation
                ),
            )
            .with_help("a push sends a record; a lookup answers a form. Declare a separate operation to push"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_templates_take_record_fields_only() {
        let found = path_placeholders("/a/{{ record.number }}/b/{{record.x_1}}").expect("parses");
        assert_eq!(
            found,
            vec![
                Placeholder {
                    offset: 13,
                    field: "number".into()
                },
                Placeholder {
                    offset: 34,
                    field: "x_1".into()
                },
            ]
        );
        assert_eq!(path_placeholders("/plain").expect("parses"), vec![]);
        for bad in [
            "/a/{{ number }}",
            "/a/{{ record.number | upper }}",
            "/a/{{ record.number",
            "/a/}}",
            "/a/{% if x %}",
            "/a/{{ record. }}",
        ] {
            assert!(path_placeholders(bad).is_err(), "{bad}");
        }
        assert_eq!(url_variable("erp"), "TRELLIS_CONNECTOR_ERP_URL");
        assert!(is_variable_name("ERP_TOKEN") && !is_variable_name("sk-live-123"));
    }
}
