//! JSON Schemas of every model file kind, generated from the types in [`crate::model`].
//!
//! The same schemas serve two purposes: editors complete and validate YAML with
//! the copies committed under `schemas/`, and the loader validates every file
//! against them so that *all* structural problems of a file are reported at once,
//! each at its own line and column.

use std::collections::HashMap;
use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use crate::diagnostic::{Code, Diagnostic};
use crate::model;
use crate::source::SourceFile;

/// The kinds of files an app folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    App,
    Entity,
    Workflow,
    Roles,
    Dashboard,
    Alert,
    Job,
    Test,
    Data,
    Connector,
}

impl FileKind {
    pub const ALL: [FileKind; 10] = [
        FileKind::App,
        FileKind::Entity,
        FileKind::Workflow,
        FileKind::Roles,
        FileKind::Dashboard,
        FileKind::Alert,
        FileKind::Job,
        FileKind::Test,
        FileKind::Data,
        FileKind::Connector,
    ];

    /// The schema's file name stem under `schemas/`.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::App => "app",
            FileKind::Entity => "entity",
            FileKind::Workflow => "workflow",
            FileKind::Roles => "roles",
            FileKind::Dashboard => "dashboard",
            FileKind::Alert => "alert",
            FileKind::Job => "job",
            FileKind::Test => "test",
            FileKind::Data => "data",
            FileKind::Connector => "connector",
        }
    }

    /// The JSON Schema (2020-12) of this kind of file.
    pub fn schema(self) -> Value {
        let schema = match self {
            FileKind::App => schemars::schema_for!(model::AppManifest),
            FileKind::Entity => schemars::schema_for!(model::Entity),
            FileKind::Workflow => schemars::schema_for!(model::Workflow),
            FileKind::Roles => schemars::schema_for!(model::RolesFile),
            FileKind::Dashboard => schemars::schema_for!(model::Dashboard),
            FileKind::Alert => schemars::schema_for!(model::Alert),
            FileKind::Job => schemars::schema_for!(model::Job),
            FileKind::Test => schemars::schema_for!(model::AppTest),
            FileKind::Data => schemars::schema_for!(model::DataFile),
            FileKind::Connector => schemars::schema_for!(model::Connector),
        };
        let mut value = schema.to_value();
        if let Value::Object(map) = &mut value {
            map.insert(
                "$id".into(),
                Value::String(format!(
                    "https://trellis.dev/schemas/{}.schema.json",
                    self.name()
                )),
            );
        }
        value
    }

    /// The schema, pretty-printed as committed under `schemas/`.
    pub fn schema_text(self) -> String {
        let mut text = serde_json::to_string_pretty(&self.schema()).unwrap_or_default();
        text.push('\n');
        text
    }

    fn validator(self) -> &'static Compiled {
        static VALIDATORS: OnceLock<HashMap<FileKind, Compiled>> = OnceLock::new();
        let all = VALIDATORS.get_or_init(|| {
            FileKind::ALL
                .iter()
                .map(|&kind| {
                    let schema = kind.schema();
                    // The schemas are generated from our own types; failing to compile
                    // one is a bug caught by every test, not a user error.
                    let validator = jsonschema::validator_for(&schema)
                        .expect("generated schemas are valid JSON Schema");
                    (kind, Compiled { schema, validator })
                })
                .collect()
        });
        &all[&self]
    }

    /// Validates a file's value; every problem becomes a located diagnostic.
    pub fn validate(self, file: &SourceFile, value: &Value) -> Vec<Diagnostic> {
        let compiled = self.validator();
        let mut out = Vec::new();
        for error in compiled.validator.iter_errors(value) {
            report(file, &compiled.schema, &error, &mut out);
        }
        out
    }
}

struct Compiled {
    schema: Value,
    validator: Validator,
}

fn report(file: &SourceFile, schema: &Value, error: &ValidationError, out: &mut Vec<Diagnostic>) {
    let at = error.instance_path().as_str().to_owned();
    let instance = error.instance();
    let d = match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let known = known_properties(schema, error.schema_path().as_str());
            for key in unexpected {
                let pointer = format!("{at}/{}", crate::source::escape(key));
                out.push(
                    file.key_error(Code::UnknownKey, &pointer, format!("unknown key `{key}`"))
                        .with_label("not part of the language here")
                        .suggest(key, known.iter().map(String::as_str))
                        .with_help_if_none(format!("expected one of: {}", known.join(", "))),
                );
            }
            return;
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            file.key_error(Code::MissingKey, &at, format!("missing key `{name}`"))
                .with_label(format!("`{name}` is required here"))
        }
        ValidationErrorKind::Type { .. } if at.is_empty() && instance.is_null() => file
            .error(Code::WrongType, &at, "the file is empty")
            .with_help("every model file is a YAML mapping; see docs/model-reference.md"),
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => t.to_string(),
                TypeKind::Multiple(ts) => ts
                    .iter()
                    .map(|t| t.to_string())
                    .filter(|t| t != "null")
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            file.error(
                Code::WrongType,
                &at,
                format!(
                    "expected {}, found {}",
                    article(&expected),
                    describe(instance)
                ),
            )
        }
        ValidationErrorKind::Enum { options } => {
            let choices = options
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
                .unwrap_or_default();
            let found = instance.as_str().unwrap_or_default();
            file.error(
                Code::InvalidValue,
                &at,
                format!("`{}` is not one of the allowed values", show(instance)),
            )
            .with_label("not allowed here")
            .suggest(found, choices.iter().copied())
            .with_help_if_none(format!("expected one of: {}", choices.join(", ")))
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            alternatives(file, schema, error, context, &at, out);
            return;
        }
        ValidationErrorKind::Minimum { limit }
        | ValidationErrorKind::ExclusiveMinimum { limit } => file.error(
            Code::InvalidValue,
            &at,
            format!("{} is below the minimum of {limit}", show(instance)),
        ),
        ValidationErrorKind::Maximum { limit }
        | ValidationErrorKind::ExclusiveMaximum { limit } => file.error(
            Code::InvalidValue,
            &at,
            format!("{} is above the maximum of {limit}", show(instance)),
        ),
        _ => file.error(Code::InvalidValue, &at, error.to_string()),
    };
    out.push(d);
}

/// Explains a value that fits none of the alternatives of an `anyOf`/`oneOf`:
/// a misspelt choice, a misspelt tag of a tagged form (`{create: ...}`), or the
/// problems of the alternative the value was evidently meant for.
fn alternatives(
    file: &SourceFile,
    schema: &Value,
    error: &ValidationError,
    context: &[Vec<ValidationError>],
    at: &str,
    out: &mut Vec<Diagnostic>,
) {
    let schema_path = error.schema_path().as_str();
    let alts: Vec<&Value> = resolve(schema, schema_path)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|alt| follow_ref(schema, alt)).collect())
        .unwrap_or_default();
    let consts: Vec<&str> = alts.iter().flat_map(|alt| constants(alt)).collect();
    let open_text = alts.iter().any(|alt| {
        alt.get("type").and_then(Value::as_str) == Some("string") && constants(alt).is_empty()
    });
    let tags: Vec<(usize, &str)> = alts
        .iter()
        .enumerate()
        .filter_map(|(i, alt)| single_tag(alt).map(|t| (i, t)))
        .collect();
    let instance = error.instance();
    let mut report_branch = |i: usize| {
        if let Some(branch) = context.get(i) {
            for e in branch {
                report(file, schema, e, out);
            }
        }
    };
    if let Value::String(found) = instance.as_ref()
        && !consts.is_empty()
        && !open_text
    {
        out.push(
            file.error(
                Code::InvalidValue,
                at,
                format!("`{found}` is not one of the allowed values"),
            )
            .with_label("not allowed here")
            .suggest(found, consts.iter().copied())
            .with_help_if_none(format!("expected one of: {}", consts.join(", "))),
        );
        return;
    }
    if let Value::Object(map) = instance.as_ref()
        && map.len() == 1
        && !tags.is_empty()
    {
        let key = map.keys().next().map(String::as_str).unwrap_or_default();
        match tags.iter().find(|(_, t)| *t == key) {
            Some((i, _)) => report_branch(*i),
            None => {
                let pointer = format!("{at}/{}", crate::source::escape(key));
                let names: Vec<&str> = tags
                    .iter()
                    .map(|(_, t)| *t)
                    .chain(consts.iter().copied())
                    .collect();
                out.push(
                    file.key_error(Code::UnknownKey, &pointer, format!("unknown key `{key}`"))
                        .with_label("not part of the language here")
                        .suggest(key, names.iter().copied())
                        .with_help_if_none(format!("expected one of: {}", names.join(", "))),
                );
            }
        }
        return;
    }
    let scores: Vec<usize> = context.iter().map(|b| branch_score(b, at)).collect();
    let best = scores.iter().copied().max().unwrap_or(0);
    if best > 0 && scores.iter().filter(|s| **s == best).count() == 1 {
        let i = scores.iter().position(|s| *s == best).unwrap_or(0);
        report_branch(i);
        return;
    }
    out.push(
        file.error(
            Code::WrongType,
            at,
            format!("{} does not fit here", describe(instance)),
        )
        .with_help(forms_hint(schema, schema_path)),
    );
}

/// How far into the value a branch got before failing: 0 when it rejected the
/// value's kind, 1 when it took the kind but not its keys, more when deeper.
fn branch_score(branch: &[ValidationError], at: &str) -> usize {
    branch
        .iter()
        .map(|e| {
            let p = e.instance_path().as_str();
            if p.len() <= at.len() {
                usize::from(!matches!(e.kind(), ValidationErrorKind::Type { .. }))
            } else {
                1 + p[at.len()..].matches('/').count()
            }
        })
        .min()
        .unwrap_or(0)
}

/// The string constants an alternative allows (`const` or `enum`).
fn constants(alt: &Value) -> Vec<&str> {
    if let Some(c) = alt.get("const").and_then(Value::as_str) {
        return vec![c];
    }
    alt.get("enum")
        .and_then(Value::as_array)
        .map(|vs| vs.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The one key of a tagged form (`{create: {...}}`), if the alternative is one.
fn single_tag(alt: &Value) -> Option<&str> {
    let props = alt.get("properties")?.as_object()?;
    let required = alt.get("required")?.as_array()?;
    match (props.len(), required.as_slice()) {
        (1, [only]) => only.as_str(),
        _ => None,
    }
}

/// The property names allowed where an `additionalProperties` error was raised.
fn known_properties(schema: &Value, schema_path: &str) -> Vec<String> {
    let parent = schema_path
        .strip_suffix("/additionalProperties")
        .unwrap_or(schema_path);
    resolve(schema, parent)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|props| props.keys().cloned().collect())
        .unwrap_or_default()
}

/// Names the accepted forms of an `anyOf`/`oneOf` (for labels: a string or `{en, zh}`).
fn forms_hint(schema: &Value, schema_path: &str) -> String {
    match resolve(schema, schema_path) {
        Some(alts @ Value::Array(_)) => format!("expected {}", describe_forms(schema, alts)),
        _ => "see the model reference for the accepted forms".to_owned(),
    }
}

fn forms_of(schema: &Value, node: &Value, keyword: &str) -> String {
    node.get(keyword)
        .map(|alts| describe_forms(schema, alts))
        .unwrap_or_default()
}

fn describe_forms(schema: &Value, alts: &Value) -> String {
    let forms: Vec<String> = Some(alts)
        .and_then(Value::as_array)
        .map(|alts| {
            alts.iter()
                .map(|alt| follow_ref(schema, alt))
                .filter(|alt| alt.get("type").and_then(Value::as_str) != Some("null"))
                .map(|alt| {
                    if let Some(props) = alt.get("properties").and_then(Value::as_object) {
                        let keys: Vec<&str> = props.keys().map(String::as_str).collect();
                        format!("{{{}}}", keys.join(", "))
                    } else if let Some(values) = alt.get("enum").and_then(Value::as_array) {
                        values
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(" | ")
                    } else if let Some(t) = alt.get("type").and_then(Value::as_str) {
                        article(t)
                    } else if alt.get("anyOf").is_some() || alt.get("oneOf").is_some() {
                        let inner = if alt.get("anyOf").is_some() {
                            "anyOf"
                        } else {
                            "oneOf"
                        };
                        forms_of(schema, alt, inner)
                    } else {
                        "another form".to_owned()
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    forms.join(", or ")
}

/// Walks a schema along a keyword path, following local `$ref`s.
fn resolve<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = root;
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment == "$ref" {
            continue;
        }
        node = follow_ref(root, node);
        node = match node {
            Value::Object(map) => map.get(&segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(follow_ref(root, node))
}

fn follow_ref<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix('#')
            .and_then(|p| root.pointer(p))
            .unwrap_or(node),
        None => node,
    }
}

/// A JSON Schema type in the words of YAML authors.
fn article(t: &str) -> String {
    match t {
        "object" => "a mapping",
        "array" => "a list",
        "string" => "text",
        "integer" => "a whole number",
        "number" => "a number",
        "boolean" => "true or false",
        "null" => "nothing",
        other => other,
    }
    .to_owned()
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("the boolean `{b}`"),
        Value::Number(n) => format!("the number `{n}`"),
        Value::String(s) => format!("the text `{s}`"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
