//! The filter language: parsing a [`Filter`] into an [`Expr`] tree, checking it
//! against an entity's fields, and evaluating it against one record in memory.
//!
//! Filters select sets of records for views, row permissions, dashboards and
//! alerts; the runtime compiles an `Expr` to parameterised SQL. Field names are
//! checked here against the model, so only model identifiers ever reach SQL.

use serde_json::Value;

use crate::model::{FieldType, Filter};

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Every part holds (a map with several keys, or `and: [...]`).
    And(Vec<Expr>),
    /// One of the parts holds (`or: [...]`).
    Or(Vec<Expr>),
    /// The part does not hold (`not: {...}`).
    Not(Box<Expr>),
    /// A comparison of a field (or a field of a linked record: `customer.region`).
    Compare {
        path: Vec<String>,
        op: Op,
        value: Operand,
    },
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
    NotIn,
    Contains,
    StartsWith,
    EndsWith,
    Between,
    IsNull,
}

impl Op {
    /// Every operator with its name in the language.
    pub const ALL: [(&'static str, Op); 13] = [
        ("eq", Op::Eq),
        ("ne", Op::Ne),
        ("lt", Op::Lt),
        ("lte", Op::Lte),
        ("gt", Op::Gt),
        ("gte", Op::Gte),
        ("in", Op::In),
        ("not_in", Op::NotIn),
        ("contains", Op::Contains),
        ("starts_with", Op::StartsWith),
        ("ends_with", Op::EndsWith),
        ("between", Op::Between),
        ("is_null", Op::IsNull),
    ];

    fn named(name: &str) -> Option<Op> {
        Op::ALL.iter().find(|(n, _)| *n == name).map(|(_, op)| *op)
    }
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A literal from the model.
    Value(Value),
    /// A variable resolved when the filter runs.
    Var(Var),
    /// The values of `in`, `not_in` and `between`.
    List(Vec<Operand>),
}

/// A variable of the filter language.
#[derive(Debug, Clone, PartialEq)]
pub enum Var {
    /// `$user.<attribute>`.
    User(String),
    /// `$today`, or `$today-30d` (days from today).
    Today(i64),
    /// `$now`, or `$now+2h` (seconds from now).
    Now(i64),
}

/// A problem in a filter, at a JSON pointer relative to the filter.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterError {
    pub pointer: String,
    pub kind: FilterErrorKind,
    pub message: String,
    /// Names close to a wrong one, for "did you mean".
    pub candidates: Vec<String>,
}

/// What kind of problem a [`FilterError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterErrorKind {
    UnknownField,
    UnknownOperator,
    BadValue,
    UnknownVariable,
    Malformed,
}

/// What a filter needs to know about a field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldFacts {
    pub kind: FieldType,
    /// Allowed values of select fields.
    pub options: Vec<String>,
    pub multiple: bool,
}

/// Answers the checker's questions about the entity a filter runs over.
pub trait FilterScope {
    /// The field at `path` (one name, or a link field and a field of its target).
    fn field(&self, path: &[String]) -> Result<FieldFacts, FilterError>;
    /// Whether `$user.<name>` exists.
    fn user_attribute(&self, name: &str) -> Option<FieldFacts>;
    /// The user attributes, for suggestions.
    fn user_attributes(&self) -> Vec<String>;
}

/// Parses and checks a filter. Every problem is returned, not just the first.
pub fn check(filter: &Filter, scope: &dyn FilterScope) -> Result<Expr, Vec<FilterError>> {
    let mut errors = Vec::new();
    let expr = parse_map(&filter.0, "", scope, &mut errors);
    if errors.is_empty() {
        Ok(expr)
    } else {
        Err(errors)
    }
}

fn err(pointer: &str, kind: FilterErrorKind, message: impl Into<String>) -> FilterError {
    FilterError {
        pointer: pointer.to_owned(),
        kind,
        message: message.into(),
        candidates: Vec::new(),
    }
}

fn parse_map(
    map: &serde_json::Map<String, Value>,
    at: &str,
    scope: &dyn FilterScope,
    errors: &mut Vec<FilterError>,
) -> Expr {
    let mut parts = Vec::new();
    for (key, value) in map {
        let here = format!("{at}/{}", crate::source::escape(key));
        match key.as_str() {
            "and" | "or" => {
                let Some(items) = value.as_array() else {
                    errors.push(err(
                        &here,
                        FilterErrorKind::Malformed,
                        format!("`{key}` takes a list of filters"),
                    ));
                    continue;
                };
                let mut subs = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let item_at = format!("{here}/{i}");
                    match item.as_object() {
                        Some(m) => subs.push(parse_map(m, &item_at, scope, errors)),
                        None => errors.push(err(
                            &item_at,
                            FilterErrorKind::Malformed,
                            "expected a filter (a mapping)",
                        )),
                    }
                }
                parts.push(if key == "and" {
                    Expr::And(subs)
                } else {
                    Expr::Or(subs)
                });
            }
            "not" => match value.as_object() {
                Some(m) => parts.push(Expr::Not(Box::new(parse_map(m, &here, scope, errors)))),
                None => errors.push(err(
                    &here,
                    FilterErrorKind::Malformed,
                    "`not` takes a filter (a mapping)",
                )),
            },
            _ => {
                let path: Vec<String> = key.split('.').map(str::to_owned).collect();
                let facts = match scope.field(&path) {
                    Ok(f) => f,
                    Err(mut e) => {
                        e.pointer = here.clone();
                        errors.push(e);
                        continue;
                    }
                };
                if matches!(
                    facts.kind,
                    FieldType::Table | FieldType::Json | FieldType::Attachment
                ) {
                    errors.push(err(
                        &here,
                        FilterErrorKind::BadValue,
                        format!("`{key}` cannot be filtered on ({})", a_field(facts.kind)),
                    ));
                    continue;
                }
                match value {
                    Value::Object(ops) => {
                        for (op_name, operand) in ops {
                            let op_at = format!("{here}/{}", crate::source::escape(op_name));
                            let Some(op) = Op::named(op_name) else {
                                let mut e = err(
                                    &op_at,
                                    FilterErrorKind::UnknownOperator,
                                    format!("unknown filter operator `{op_name}`"),
                                );
                                e.candidates =
                                    Op::ALL.iter().map(|(n, _)| (*n).to_owned()).collect();
                                errors.push(e);
                                continue;
                            };
                            if let Some(operand) =
                                operand_for(op, operand, &facts, &op_at, key, scope, errors)
                            {
                                parts.push(Expr::Compare {
                                    path: path.clone(),
                                    op,
                                    value: operand,
                                });
                            }
                        }
                    }
                    _ => {
                        let op = if facts.multiple || facts.kind == FieldType::MultiSelect {
                            Op::Contains
                        } else {
                            Op::Eq
                        };
                        if let Some(operand) =
                            operand_for(op, value, &facts, &here, key, scope, errors)
                        {
                            parts.push(Expr::Compare {
                                path,
                                op,
                                value: operand,
                            });
                        }
                    }
                }
            }
        }
    }
    if parts.len() == 1 {
        parts.remove(0)
    } else {
        Expr::And(parts)
    }
}

fn operand_for(
    op: Op,
    value: &Value,
    facts: &FieldFacts,
    at: &str,
    field: &str,
    scope: &dyn FilterScope,
    errors: &mut Vec<FilterError>,
) -> Option<Operand> {
    let ordered = matches!(
        facts.kind,
        FieldType::Integer
            | FieldType::Decimal
            | FieldType::Money
            | FieldType::Percent
            | FieldType::Date
            | FieldType::Datetime
            | FieldType::Text
            | FieldType::Email
            | FieldType::Phone
            | FieldType::Url
            | FieldType::LongText
    );
    let textual = matches!(
        facts.kind,
        FieldType::Text
            | FieldType::LongText
            | FieldType::Email
            | FieldType::Phone
            | FieldType::Url
    );
    match op {
        Op::IsNull => match value {
            Value::Bool(_) => Some(Operand::Value(value.clone())),
            _ => {
                errors.push(err(
                    at,
                    FilterErrorKind::BadValue,
                    "`is_null` takes `true` or `false`",
                ));
                None
            }
        },
        Op::In | Op::NotIn | Op::Between => {
            let Some(items) = value.as_array() else {
                errors.push(err(
                    at,
                    FilterErrorKind::BadValue,
                    "expected a list of values",
                ));
                return None;
            };
            if op == Op::Between && (items.len() != 2 || !ordered) {
                let msg = if ordered {
                    "`between` takes two values: [low, high]".to_owned()
                } else {
                    format!("`{field}` has no order; `between` does not apply")
                };
                errors.push(err(at, FilterErrorKind::BadValue, msg));
                return None;
            }
            let single = FieldFacts {
                multiple: false,
                ..facts.clone()
            };
            let list: Vec<Operand> = items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    scalar(item, &single, &format!("{at}/{i}"), field, scope, errors)
                })
                .collect();
            (list.len() == items.len()).then_some(Operand::List(list))
        }
        Op::Lt | Op::Lte | Op::Gt | Op::Gte if !ordered => {
            errors.push(err(
                at,
                FilterErrorKind::BadValue,
                format!("`{field}` has no order; use `eq`, `ne` or `in`"),
            ));
            None
        }
        Op::StartsWith | Op::EndsWith if !textual => {
            errors.push(err(
                at,
                FilterErrorKind::BadValue,
                format!("`{field}` is not text"),
            ));
            None
        }
        Op::Contains if !(textual || facts.multiple || facts.kind == FieldType::MultiSelect) => {
            errors.push(err(
                at,
                FilterErrorKind::BadValue,
                format!("`contains` needs a text or multi-value field; `{field}` is neither"),
            ));
            None
        }
        _ => {
            let single = FieldFacts {
                multiple: false,
                kind: if facts.kind == FieldType::MultiSelect {
                    FieldType::Select
                } else {
                    facts.kind
                },
                ..facts.clone()
            };
            scalar(value, &single, at, field, scope, errors)
        }
    }
}

/// Checks one value (a literal or a `$variable`) against a field's type, as a
/// default or a `set` effect would store it.
pub fn check_value(
    value: &Value,
    facts: &FieldFacts,
    field: &str,
    scope: &dyn FilterScope,
) -> Result<Operand, Vec<FilterError>> {
    let mut errors = Vec::new();
    let single = FieldFacts {
        multiple: false,
        ..facts.clone()
    };
    let operand = match value {
        Value::Array(items) if facts.multiple || facts.kind == FieldType::MultiSelect => {
            let single = FieldFacts {
                kind: if facts.kind == FieldType::MultiSelect {
                    FieldType::Select
                } else {
                    facts.kind
                },
                ..single
            };
            let list: Vec<Operand> = items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    scalar(item, &single, &format!("/{i}"), field, scope, &mut errors)
                })
                .collect();
            Some(Operand::List(list))
        }
        _ => scalar(value, &single, "", field, scope, &mut errors),
    };
    match operand {
        Some(op) if errors.is_empty() => Ok(op),
        _ => Err(errors),
    }
}

/// Checks one value against a field's type.
fn scalar(
    value: &Value,
    facts: &FieldFacts,
    at: &str,
    field: &str,
    scope: &dyn FilterScope,
    errors: &mut Vec<FilterError>,
) -> Option<Operand> {
    if let Some(text) = value.as_str()
        && let Some(var) = text.strip_prefix('$')
    {
        return variable(var, facts, at, scope, errors).map(Operand::Var);
    }
    let fits = match facts.kind {
        FieldType::Integer => value.as_i64().is_some(),
        // Exact numbers travel as text in the API (`"1200.50"`), so numeric text fits too.
        FieldType::Decimal | FieldType::Money | FieldType::Percent => {
            value.is_number()
                || value
                    .as_str()
                    .is_some_and(|s| s.trim().parse::<f64>().is_ok())
        }
        FieldType::Boolean => value.is_boolean(),
        FieldType::Date => value.as_str().is_some_and(is_date),
        FieldType::Datetime => value
            .as_str()
            .is_some_and(|s| is_date(s) || chrono::DateTime::parse_from_rfc3339(s).is_ok()),
        FieldType::Select | FieldType::MultiSelect => match value.as_str() {
            Some(v) if facts.options.iter().any(|o| o == v) => true,
            Some(v) => {
                let mut e = err(
                    at,
                    FilterErrorKind::BadValue,
                    format!("`{v}` is not an option of `{field}`"),
                );
                e.candidates = facts.options.clone();
                errors.push(e);
                return None;
            }
            None => false,
        },
        FieldType::Link | FieldType::User => value.is_string() || value.as_i64().is_some(),
        _ => value.is_string(),
    };
    if fits || value.is_null() {
        Some(Operand::Value(value.clone()))
    } else {
        errors.push(err(
            at,
            FilterErrorKind::BadValue,
            format!(
                "`{}` does not fit `{field}`, {}",
                compact(value),
                a_field(facts.kind)
            ),
        ));
        None
    }
}

fn variable(
    var: &str,
    facts: &FieldFacts,
    at: &str,
    scope: &dyn FilterScope,
    errors: &mut Vec<FilterError>,
) -> Option<Var> {
    if let Some(attr) = var.strip_prefix("user.") {
        return match scope.user_attribute(attr) {
            Some(_) => Some(Var::User(attr.to_owned())),
            None => {
                let mut e = err(
                    at,
                    FilterErrorKind::UnknownVariable,
                    format!("unknown variable `$user.{attr}`"),
                );
                e.candidates = scope.user_attributes();
                errors.push(e);
                None
            }
        };
    }
    let (base, offset) = match var.find(['+', '-']) {
        Some(i) => (&var[..i], Some(&var[i..])),
        None => (var, None),
    };
    let seconds = match offset {
        None => Some(0),
        Some(o) => parse_offset(o),
    };
    let date_like = matches!(facts.kind, FieldType::Date | FieldType::Datetime);
    match (base, seconds) {
        ("today", Some(s)) if date_like && s % 86_400 == 0 => Some(Var::Today(s / 86_400)),
        ("now", Some(s)) if facts.kind == FieldType::Datetime => Some(Var::Now(s)),
        ("today" | "now", Some(_)) if !date_like => {
            errors.push(err(
                at,
                FilterErrorKind::BadValue,
                format!("`${var}` is a date; the field is {}", a_field(facts.kind)),
            ));
            None
        }
        ("today" | "now", _) => {
            errors.push(err(at, FilterErrorKind::BadValue, format!("invalid offset in `${var}`: use whole days for `$today` (`$today-30d`), and `m`, `h` or `d` for `$now`")));
            None
        }
        _ => {
            let mut e = err(
                at,
                FilterErrorKind::UnknownVariable,
                format!("unknown variable `${var}`"),
            );
            e.candidates = vec!["$today".into(), "$now".into(), "$user.id".into()];
            errors.push(e);
            None
        }
    }
}

/// Parses `+2h`, `-30d`, `+15m`, `-1w` into seconds.
fn parse_offset(text: &str) -> Option<i64> {
    let sign = if text.starts_with('-') { -1 } else { 1 };
    let seconds = crate::check::duration_seconds(&text[1..])?;
    Some(sign * seconds)
}

fn is_date(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The name of a field type as written in the model.
pub fn kind_name(kind: FieldType) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// "an integer field", "a text field": a field type in a sentence.
pub fn a_field(kind: FieldType) -> String {
    let name = kind_name(kind).replace('_', " ");
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name} field")
}

/// A record as field name → JSON value, for evaluating filters in memory.
pub type RecordValues = serde_json::Map<String, Value>;

/// Values of the variables, for evaluating filters in memory.
pub struct Bindings<'a> {
    pub user: &'a serde_json::Map<String, Value>,
    pub today: chrono::NaiveDate,
    pub now: chrono::DateTime<chrono::Utc>,
}

impl Expr {
    /// Whether one record matches (form conditions, conditional uniqueness checks).
    /// Paths through links are not followed in memory and never match.
    pub fn matches(&self, record: &RecordValues, vars: &Bindings) -> bool {
        match self {
            Expr::And(parts) => parts.iter().all(|p| p.matches(record, vars)),
            Expr::Or(parts) => parts.iter().any(|p| p.matches(record, vars)),
            Expr::Not(inner) => !inner.matches(record, vars),
            Expr::Compare { path, op, value } => {
                let [name] = path.as_slice() else {
                    return false;
                };
                let field = record.get(name).unwrap_or(&Value::Null);
                compare(field, *op, &resolve(value, vars))
            }
        }
    }
}

fn resolve(operand: &Operand, vars: &Bindings) -> Value {
    match operand {
        Operand::Value(v) => v.clone(),
        Operand::List(items) => Value::Array(items.iter().map(|i| resolve(i, vars)).collect()),
        Operand::Var(Var::User(attr)) => vars.user.get(attr).cloned().unwrap_or(Value::Null),
        Operand::Var(Var::Today(days)) => Value::String(
            (vars.today + chrono::Duration::days(*days))
                .format("%Y-%m-%d")
                .to_string(),
        ),
        Operand::Var(Var::Now(secs)) => Value::String(
            (vars.now + chrono::Duration::seconds(*secs))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ),
    }
}

/// Two values as numbers, when one is a number and the other a number or
/// numeric text: exact numbers travel as text (`"12.50"`) and filters
/// written in YAML hold numbers (`{qty: {gt: 0}}`).
fn numbers(a: &Value, b: &Value) -> Option<(f64, f64)> {
    let text = |v: &Value| v.as_str().and_then(|s| s.trim().parse::<f64>().ok());
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Some((x.as_f64()?, y.as_f64()?)),
        (Value::Number(x), y) => Some((x.as_f64()?, text(y)?)),
        (x, Value::Number(y)) => Some((text(x)?, y.as_f64()?)),
        _ => None,
    }
}

/// Equality, numbers by value (`2`, `2.0` and `"2.00"` are the same).
fn same(a: &Value, b: &Value) -> bool {
    numbers(a, b).map_or_else(|| a == b, |(x, y)| x == y)
}

fn compare(field: &Value, op: Op, value: &Value) -> bool {
    use std::cmp::Ordering;
    let order = |a: &Value, b: &Value| -> Option<Ordering> {
        if let Some((x, y)) = numbers(a, b) {
            return x.partial_cmp(&y);
        }
        match (a, b) {
            (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
            _ => None,
        }
    };
    match op {
        Op::Eq => same(field, value),
        Op::Ne => !same(field, value),
        Op::Lt => order(field, value) == Some(Ordering::Less),
        Op::Lte => matches!(order(field, value), Some(Ordering::Less | Ordering::Equal)),
        Op::Gt => order(field, value) == Some(Ordering::Greater),
        Op::Gte => matches!(
            order(field, value),
            Some(Ordering::Greater | Ordering::Equal)
        ),
        Op::In => value
            .as_array()
            .is_some_and(|vs| vs.iter().any(|v| same(field, v))),
        Op::NotIn => value
            .as_array()
            .is_some_and(|vs| !vs.iter().any(|v| same(field, v))),
        Op::Contains => match (field, value) {
            (Value::Array(items), v) => items.contains(v),
            (Value::String(s), Value::String(v)) => s.contains(v.as_str()),
            _ => false,
        },
        Op::StartsWith => {
            matches!((field, value), (Value::String(s), Value::String(v)) if s.starts_with(v.as_str()))
        }
        Op::EndsWith => {
            matches!((field, value), (Value::String(s), Value::String(v)) if s.ends_with(v.as_str()))
        }
        Op::Between => match value.as_array().map(Vec::as_slice) {
            Some([low, high]) => {
                matches!(order(field, low), Some(Ordering::Greater | Ordering::Equal))
                    && matches!(order(field, high), Some(Ordering::Less | Ordering::Equal))
            }
            _ => false,
        },
        Op::IsNull => field.is_null() == value.as_bool().unwrap_or(true),
    }
}
