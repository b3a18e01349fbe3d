//! Field values: from API JSON to checked values (type coercion with a clear
//! error per field), to SQL values of a dialect, and back from rows to JSON.
//!
//! Exact numbers travel as JSON strings (`"1200.50"`) so no float ever touches
//! money; dates are `YYYY-MM-DD`; datetimes RFC 3339 in UTC.

use rust_decimal::Decimal;
use sea_orm::QueryResult;
use sea_orm::sea_query::Value as SqlValue;
use serde_json::{Value as Json, json};
use trellis_engine::model::FieldType;

use super::FieldError;
use crate::catalog::FieldModel;
use crate::store::{ColumnKind, Dialect};

/// Checks and normalises one input value for a field. `null` stays `null`
/// (whether it is allowed is the `required` check's business).
pub fn coerce(name: &str, field: &FieldModel, input: &Json) -> Result<Json, FieldError> {
    if input.is_null() {
        return Ok(Json::Null);
    }
    let def = &field.def;
    let err = |code: &str, message: String| FieldError::new(name, code, message);
    let type_error = || err("type", format!("expected {}", expected(def.kind)));
    let one = |value: &Json| -> Result<Json, FieldError> {
        match def.kind {
            FieldType::Text
            | FieldType::LongText
            | FieldType::Email
            | FieldType::Phone
            | FieldType::Url => {
                let text = value.as_str().ok_or_else(type_error)?;
                let chars = text.chars().count() as u32;
                if def.min_length.is_some_and(|min| chars < min) {
                    return Err(err(
                        "min_length",
                        format!("at least {} characters", def.min_length.unwrap_or_default()),
                    ));
                }
                if def.max_length.is_some_and(|max| chars > max) {
                    return Err(err(
                        "max_length",
                        format!("at most {} characters", def.max_length.unwrap_or_default()),
                    ));
                }
                if def.kind == FieldType::Email && !text.is_empty() && !looks_like_email(text) {
                    return Err(err("format", "not an e-mail address".into()));
                }
                if let Some(pattern) = &field.pattern
                    && !text.is_empty()
                    && !pattern.is_match(text)
                {
                    let message = def.pattern_message.as_ref().map_or_else(
                        || {
                            format!(
                                "does not match {}",
                                def.pattern.as_deref().unwrap_or_default()
                            )
                        },
                        |m| m.text("en").to_owned(),
                    );
                    return Err(err("pattern", message));
                }
                Ok(Json::String(text.to_owned()))
            }
            FieldType::Integer => {
                let n = match value {
                    Json::Number(n) => n.as_i64(),
                    Json::String(s) => s.trim().parse().ok(),
                    _ => None,
                }
                .ok_or_else(type_error)?;
                range(name, def, Decimal::from(n))?;
                Ok(json!(n))
            }
            FieldType::Decimal | FieldType::Money | FieldType::Percent => {
                let d = decimal(value).ok_or_else(type_error)?;
                let (precision, scale) = match field.column {
                    ColumnKind::Exact { precision, scale } => {
                        (u32::from(precision), u32::from(scale))
                    }
                    _ => (18, 2),
                };
                let d = d.normalize();
                if d.scale() > scale {
                    return Err(err("scale", format!("at most {scale} decimal places")));
                }
                range(name, def, d)?;
                let mut d = d;
                d.rescale(scale);
                // The column holds `precision` digits: more would fail on
                // PostgreSQL and be lost on SQLite.
                if digits(d.mantissa()) > precision {
                    let whole = precision.saturating_sub(scale);
                    return Err(err(
                        "precision",
                        format!("at most {whole} digits before the decimal point"),
                    ));
                }
                Ok(Json::String(d.to_string()))
            }
            FieldType::Boolean => value.as_bool().map(Json::Bool).ok_or_else(type_error),
            FieldType::Date => {
                let text = value.as_str().ok_or_else(type_error)?;
                let date = text
                    .parse::<chrono::NaiveDate>()
                    .map_err(|_| err("type", "expected a date like 2026-01-31".into()))?;
                Ok(Json::String(date.to_string()))
            }
            FieldType::Datetime => {
                let text = value.as_str().ok_or_else(type_error)?;
                let t = chrono::DateTime::parse_from_rfc3339(text).map_err(|_| {
                    err(
                        "type",
                        "expected a date and time like 2026-01-31T09:30:00Z".into(),
                    )
                })?;
                Ok(Json::String(datetime_text(t.with_timezone(&chrono::Utc))))
            }
            FieldType::Select | FieldType::MultiSelect => {
                let v = value.as_str().ok_or_else(type_error)?;
                let allowed = def.options.iter().flatten().any(|o| o.value() == v);
                if allowed {
                    Ok(Json::String(v.to_owned()))
                } else {
                    Err(err("option", format!("`{v}` is not one of the options")))
                }
            }
            FieldType::Link | FieldType::User => match value {
                Json::Number(n) if n.as_i64().is_some_and(|i| i > 0) => Ok(value.clone()),
                Json::String(s) => s
                    .parse::<i64>()
                    .ok()
                    .filter(|i| *i > 0)
                    .map(|i| json!(i))
                    .ok_or_else(type_error),
                _ => Err(type_error()),
            },
            FieldType::Attachment | FieldType::Json | FieldType::Table => Ok(value.clone()),
        }
    };
    let many = def.kind == FieldType::MultiSelect
        || (def.multiple
            && matches!(
                def.kind,
                FieldType::Link | FieldType::User | FieldType::Attachment
            ));
    if many {
        let items = input
            .as_array()
            .ok_or_else(|| err("type", "expected a list".into()))?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let v = one(item)?;
            if !out.contains(&v) {
                out.push(v);
            }
        }
        Ok(Json::Array(out))
    } else {
        one(input)
    }
}

fn range(name: &str, def: &trellis_engine::model::Field, value: Decimal) -> Result<(), FieldError> {
    let bound = |b: f64| b.to_string().parse::<Decimal>().unwrap_or_default();
    if let Some(min) = def.min
        && value < bound(min)
    {
        return Err(FieldError::new(
            name,
            "min",
            format!("must be at least {min}"),
        ));
    }
    if let Some(max) = def.max
        && value > bound(max)
    {
        return Err(FieldError::new(
            name,
            "max",
            format!("must be at most {max}"),
        ));
    }
    Ok(())
}

/// The decimal digits of a number (0 has one).
fn digits(n: i128) -> u32 {
    n.unsigned_abs().checked_ilog10().map_or(1, |log| log + 1)
}

fn expected(kind: FieldType) -> &'static str {
    match kind {
        FieldType::Integer => "a whole number",
        FieldType::Decimal | FieldType::Money | FieldType::Percent => "a number",
        FieldType::Boolean => "true or false",
        FieldType::Date => "a date like 2026-01-31",
        FieldType::Datetime => "a date and time like 2026-01-31T09:30:00Z",
        FieldType::Link | FieldType::User => "a record id",
        _ => "text",
    }
}

fn looks_like_email(text: &str) -> bool {
    let mut parts = text.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(user), Some(domain), None) if !user.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.'))
}

/// A JSON number or numeric string as an exact decimal.
pub fn decimal(value: &Json) -> Option<Decimal> {
    match value {
        Json::Number(n) => n
            .to_string()
            .parse()
            .ok()
            .or_else(|| Decimal::from_scientific(&n.to_string()).ok()),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The fixed-width UTC form of a datetime, used on SQLite and in the API.
pub fn datetime_text(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A normalised field value as the SQL value of its column.
pub fn to_sql(value: &Json, column: ColumnKind, dialect: Dialect) -> SqlValue {
    if value.is_null() {
        return match column {
            ColumnKind::Id | ColumnKind::Integer => SqlValue::BigInt(None),
            ColumnKind::Boolean => SqlValue::Bool(None),
            ColumnKind::Exact { .. } if dialect == Dialect::Sqlite => SqlValue::BigInt(None),
            ColumnKind::Exact { .. } => SqlValue::Decimal(None),
            ColumnKind::Date if dialect == Dialect::Postgres => SqlValue::ChronoDate(None),
            ColumnKind::DateTime if dialect == Dialect::Postgres => {
                SqlValue::ChronoDateTimeUtc(None)
            }
            ColumnKind::Json if dialect == Dialect::Postgres => SqlValue::Json(None),
            _ => SqlValue::String(None),
        };
    }
    match (column, dialect) {
        (ColumnKind::Json, Dialect::Sqlite) => SqlValue::String(Some(value.to_string())),
        (ColumnKind::Json, Dialect::Postgres) => SqlValue::Json(Some(Box::new(value.clone()))),
        // Values reaching here were coerced, so encoding cannot fail; a mismatch
        // would be a bug and is stored as NULL rather than a wrong value.
        _ => crate::store::filter_sql::encode(value, column, dialect)
            .unwrap_or(SqlValue::String(None)),
    }
}

/// Reads a column of a row back into its API JSON form.
pub fn from_row(
    row: &QueryResult,
    column: &str,
    kind: ColumnKind,
    dialect: Dialect,
) -> Result<Json, sea_orm::DbErr> {
    Ok(match (kind, dialect) {
        (ColumnKind::Id | ColumnKind::Integer, _) => row
            .try_get::<Option<i64>>("", column)?
            .map_or(Json::Null, |v| json!(v)),
        (ColumnKind::Text, _) | (ColumnKind::Date | ColumnKind::DateTime, Dialect::Sqlite) => row
            .try_get::<Option<String>>("", column)?
            .map_or(Json::Null, Json::String),
        (ColumnKind::Boolean, _) => row
            .try_get::<Option<bool>>("", column)?
            .map_or(Json::Null, Json::Bool),
        (ColumnKind::Date, Dialect::Postgres) => row
            .try_get::<Option<chrono::NaiveDate>>("", column)?
            .map_or(Json::Null, |d| Json::String(d.to_string())),
        (ColumnKind::DateTime, Dialect::Postgres) => row
            .try_get::<Option<chrono::DateTime<chrono::Utc>>>("", column)?
            .map_or(Json::Null, |t| Json::String(datetime_text(t))),
        (ColumnKind::Exact { scale, .. }, Dialect::Sqlite) => row
            .try_get::<Option<i64>>("", column)?
            .map_or(Json::Null, |units| {
                Json::String(Decimal::new(units, u32::from(scale)).to_string())
            }),
        (ColumnKind::Exact { scale, .. }, Dialect::Postgres) => row
            .try_get::<Option<Decimal>>("", column)?
            .map_or(Json::Null, |mut d| {
                d.rescale(u32::from(scale));
                Json::String(d.to_string())
            }),
        (ColumnKind::Json, Dialect::Sqlite) => row
            .try_get::<Option<String>>("", column)?
            .map_or(Json::Null, |t| {
                serde_json::from_str(&t).unwrap_or(Json::Null)
            }),
        (ColumnKind::Json, Dialect::Postgres) => row
            .try_get::<Option<Json>>("", column)?
            .unwrap_or(Json::Null),
    })
}
