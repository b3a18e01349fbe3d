//! Compiles a filter of the model language into a parameterised SQL condition.
//!
//! Identifiers come only from the layout (a name the model declared); values are
//! always bound as parameters (or, in DDL, rendered as escaped literals by
//! sea-query), never spliced into SQL text.

use rust_decimal::Decimal;
use sea_orm::sea_query::{
    Alias, Condition, Expr as SqlExpr, ExprTrait, LikeExpr, Query, SimpleExpr, Value,
};
use serde_json::Value as Json;
use trellis_engine::filter::{
    self, Bindings, Expr, FieldFacts, FilterError, FilterErrorKind, FilterScope, Op, Operand, Var,
};
use trellis_engine::model::{FieldType, Filter};

use super::{ColumnKind, Dialect, Table};

/// Why a filter cannot become SQL.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterSqlError {
    #[error("{0}")]
    Invalid(String),
    #[error("`{0}` follows a link; this is not supported here yet")]
    LinkPath(String),
    #[error("`{0}` needs a value for its variables")]
    Unbound(String),
}

/// Where the columns of a filter's fields are: the kind of each field, and for a
/// field of a linked record (`customer.region`) the link column and the table it
/// points into.
pub trait Columns {
    fn column(&self, path: &[String]) -> Option<(Option<(String, String)>, ColumnKind)>;
}

impl Columns for Table {
    fn column(&self, path: &[String]) -> Option<(Option<(String, String)>, ColumnKind)> {
        match path {
            [name] => self.columns.get(name).map(|c| (None, c.kind)),
            _ => None,
        }
    }
}

/// A table seen as a filter scope: its columns and their kinds.
struct TableScope<'a>(&'a Table);

impl FilterScope for TableScope<'_> {
    fn field(&self, path: &[String]) -> Result<FieldFacts, FilterError> {
        let unknown = || FilterError {
            pointer: String::new(),
            kind: FilterErrorKind::UnknownField,
            message: format!("unknown field `{}`", path.join(".")),
            candidates: self.0.columns.keys().cloned().collect(),
        };
        let [name] = path else { return Err(unknown()) };
        let column = self.0.columns.get(name).ok_or_else(unknown)?;
        let kind = match column.kind {
            ColumnKind::Id | ColumnKind::Integer => FieldType::Integer,
            ColumnKind::Text => FieldType::Text,
            ColumnKind::Boolean => FieldType::Boolean,
            ColumnKind::Date => FieldType::Date,
            ColumnKind::DateTime => FieldType::Datetime,
            ColumnKind::Exact { .. } => FieldType::Decimal,
            ColumnKind::Json => FieldType::Json,
        };
        Ok(FieldFacts {
            kind,
            options: Vec::new(),
            multiple: false,
        })
    }

    fn user_attribute(&self, _name: &str) -> Option<FieldFacts> {
        Some(FieldFacts {
            kind: FieldType::Text,
            options: Vec::new(),
            multiple: false,
        })
    }

    fn user_attributes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Compiles a model filter over `table`. `vars` binds `$user`, `$today` and `$now`;
/// without it a filter using them is refused (index conditions must be constant).
pub fn compile(
    filter: &Filter,
    table: &Table,
    dialect: Dialect,
    vars: Option<&Bindings>,
) -> Result<Condition, FilterSqlError> {
    compile_with(filter, &TableScope(table), table, dialect, vars)
}

/// Compiles a filter whose fields `scope` describes (types, options, multiple
/// values) over the columns of `table`.
pub fn compile_with(
    filter: &Filter,
    scope: &dyn FilterScope,
    table: &dyn Columns,
    dialect: Dialect,
    vars: Option<&Bindings>,
) -> Result<Condition, FilterSqlError> {
    let expr = filter::check(filter, scope).map_err(|errors| {
        FilterSqlError::Invalid(
            errors
                .into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    condition(&expr, table, dialect, vars)
}

fn condition(
    expr: &Expr,
    table: &dyn Columns,
    dialect: Dialect,
    vars: Option<&Bindings>,
) -> Result<Condition, FilterSqlError> {
    Ok(match expr {
        Expr::And(parts) => parts.iter().try_fold(Condition::all(), |c, p| {
            Ok::<_, FilterSqlError>(c.add(condition(p, table, dialect, vars)?))
        })?,
        Expr::Or(parts) => parts.iter().try_fold(Condition::any(), |c, p| {
            Ok::<_, FilterSqlError>(c.add(condition(p, table, dialect, vars)?))
        })?,
        Expr::Not(inner) => condition(inner, table, dialect, vars)?.not(),
        // An attribute the account lacks matches nothing: `{supplier: $user.supplier}`
        // must not become `supplier IS NULL` and show every record without one. SQL's
        // unknown, not false, so that `not` around it matches nothing either.
        Expr::Compare { value, .. } if unset_user_attribute(value, vars) => {
            Condition::all().add(SqlExpr::cust("CAST(NULL AS BOOLEAN)"))
        }
        Expr::Compare { path, op, value } => {
            let (link, kind) = table
                .column(path)
                .ok_or_else(|| FilterSqlError::LinkPath(path.join(".")))?;
            let name = path
                .last()
                .ok_or_else(|| FilterSqlError::Invalid("an empty field path".into()))?;
            let compared = compare(name, kind, *op, value, dialect, vars)?;
            match link {
                None => compared,
                // A field of the linked record: the link must point into the matching records.
                Some((link_column, target)) => {
                    let mut inner = Query::select();
                    inner
                        .column(Alias::new("id"))
                        .from(Alias::new(target.as_str()))
                        .cond_where(compared);
                    Condition::all()
                        .add(SqlExpr::col(Alias::new(link_column.as_str())).in_subquery(inner))
                }
            }
        }
    })
}

/// One comparison of a column of the statement's table.
fn compare(
    name: &str,
    kind: ColumnKind,
    op: Op,
    value: &Operand,
    dialect: Dialect,
    vars: Option<&Bindings>,
) -> Result<Condition, FilterSqlError> {
    let name = &name.to_owned();
    let op = &op;
    {
        {
            let col = SqlExpr::col(Alias::new(name.as_str()));
            if kind == ColumnKind::Json {
                return json_condition(name, *op, &resolve(value, vars, name)?, dialect);
            }
            let one = |operand: &Operand| -> Result<Value, FilterSqlError> {
                encode(&resolve(operand, vars, name)?, kind, dialect)
            };
            let many = |operand: &Operand| -> Result<Vec<Value>, FilterSqlError> {
                match operand {
                    Operand::List(items) => items.iter().map(one).collect(),
                    other => Ok(vec![one(other)?]),
                }
            };
            let cond: SimpleExpr = match op {
                Op::Eq => match one(value)? {
                    v if is_null(&v) => col.is_null(),
                    v => col.eq(v),
                },
                Op::Ne => match one(value)? {
                    v if is_null(&v) => col.is_not_null(),
                    v => return Ok(Condition::any().add(col.clone().ne(v)).add(col.is_null())),
                },
                Op::Lt => col.lt(one(value)?),
                Op::Lte => col.lte(one(value)?),
                Op::Gt => col.gt(one(value)?),
                Op::Gte => col.gte(one(value)?),
                Op::In => col.is_in(many(value)?),
                Op::NotIn => {
                    return Ok(Condition::any()
                        .add(col.clone().is_not_in(many(value)?))
                        .add(col.is_null()));
                }
                Op::Between => match many(value)?.as_slice() {
                    [low, high] => col.between(low.clone(), high.clone()),
                    _ => return Err(FilterSqlError::Invalid("`between` takes two values".into())),
                },
                Op::IsNull => match resolve(value, vars, name)? {
                    Json::Bool(false) => col.is_not_null(),
                    _ => col.is_null(),
                },
                Op::Contains | Op::StartsWith | Op::EndsWith => {
                    let text = resolve(value, vars, name)?;
                    let text = text.as_str().unwrap_or_default();
                    let escaped = text
                        .replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_");
                    let pattern = match op {
                        Op::Contains => format!("%{escaped}%"),
                        Op::StartsWith => format!("{escaped}%"),
                        _ => format!("%{escaped}"),
                    };
                    col.like(LikeExpr::new(pattern).escape('\\'))
                }
            };
            Ok(Condition::all().add(cond))
        }
    }
}

/// Conditions on multi-value fields (tags, several links): membership and emptiness.
fn json_condition(
    name: &str,
    op: Op,
    value: &Json,
    dialect: Dialect,
) -> Result<Condition, FilterSqlError> {
    // The identifier comes from the model and is quoted; the value is a parameter.
    let col = format!("\"{}\"", name.replace('"', "\"\""));
    let cond = match (op, dialect) {
        (Op::Contains, Dialect::Sqlite) => SqlExpr::cust_with_values(
            format!("EXISTS (SELECT 1 FROM json_each({col}) WHERE json_each.value = ?)"),
            [scalar(value)?],
        ),
        (Op::Contains, Dialect::Postgres) => SqlExpr::cust_with_values(
            format!("{col} @> $1"),
            [Value::Json(Some(Box::new(Json::Array(vec![
                value.clone(),
            ]))))],
        ),
        (Op::IsNull, _) => {
            let empty = if dialect == Dialect::Sqlite {
                format!("({col} IS NULL OR {col} = '[]')")
            } else {
                format!("({col} IS NULL OR {col} = '[]'::jsonb)")
            };
            let sql = if value.as_bool() == Some(false) {
                format!("NOT {empty}")
            } else {
                empty
            };
            SqlExpr::cust(sql)
        }
        _ => {
            return Err(FilterSqlError::Invalid(format!(
                "`{name}` holds several values: use `contains` or `is_null`"
            )));
        }
    };
    Ok(Condition::all().add(cond))
}

fn scalar(value: &Json) -> Result<Value, FilterSqlError> {
    match value {
        Json::String(s) => Ok(Value::String(Some(s.clone()))),
        Json::Number(n) if n.is_i64() => Ok(Value::BigInt(n.as_i64())),
        other => Err(FilterSqlError::Invalid(format!(
            "`{other}` cannot be looked for in a list"
        ))),
    }
}

/// Whether the operand names a `$user` attribute with no value for this account.
fn unset_user_attribute(operand: &Operand, vars: Option<&Bindings>) -> bool {
    match (operand, vars) {
        (Operand::Var(Var::User(attr)), Some(b)) => b.user.get(attr).is_none_or(Json::is_null),
        (Operand::List(items), _) => items.iter().any(|i| unset_user_attribute(i, vars)),
        _ => false,
    }
}

fn is_null(v: &Value) -> bool {
    matches!(v, Value::String(None) | Value::BigInt(None))
}

fn resolve(
    operand: &Operand,
    vars: Option<&Bindings>,
    field: &str,
) -> Result<Json, FilterSqlError> {
    match (operand, vars) {
        (Operand::Value(v), _) => Ok(v.clone()),
        (Operand::List(items), _) => items
            .iter()
            .map(|i| resolve(i, vars, field))
            .collect::<Result<Vec<_>, _>>()
            .map(Json::Array),
        (Operand::Var(_), None) => Err(FilterSqlError::Unbound(field.to_owned())),
        (Operand::Var(Var::User(attr)), Some(b)) => {
            Ok(b.user.get(attr).cloned().unwrap_or(Json::Null))
        }
        (Operand::Var(Var::Today(days)), Some(b)) => Ok(Json::String(
            (b.today + chrono::Duration::days(*days))
                .format("%Y-%m-%d")
                .to_string(),
        )),
        (Operand::Var(Var::Now(secs)), Some(b)) => Ok(Json::String(
            (b.now + chrono::Duration::seconds(*secs))
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string(),
        )),
    }
}

/// A JSON value as the SQL value of a column kind in a dialect.
pub fn encode(value: &Json, kind: ColumnKind, dialect: Dialect) -> Result<Value, FilterSqlError> {
    let bad = || FilterSqlError::Invalid(format!("`{value}` does not fit a {kind:?} column"));
    if value.is_null() {
        return Ok(match kind {
            ColumnKind::Id | ColumnKind::Integer => Value::BigInt(None),
            _ => Value::String(None),
        });
    }
    Ok(match (kind, dialect) {
        (ColumnKind::Id | ColumnKind::Integer, _) => {
            Value::BigInt(Some(value.as_i64().ok_or_else(bad)?))
        }
        (ColumnKind::Text, _) => Value::String(Some(value.as_str().ok_or_else(bad)?.to_owned())),
        (ColumnKind::Boolean, _) => Value::Bool(Some(value.as_bool().ok_or_else(bad)?)),
        (ColumnKind::Date, Dialect::Sqlite) => Value::String(Some(
            date(value).ok_or_else(bad)?.format("%Y-%m-%d").to_string(),
        )),
        (ColumnKind::Date, Dialect::Postgres) => {
            Value::ChronoDate(Some(date(value).ok_or_else(bad)?))
        }
        (ColumnKind::DateTime, Dialect::Sqlite) => Value::String(Some(
            datetime(value)
                .ok_or_else(bad)?
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string(),
        )),
        (ColumnKind::DateTime, Dialect::Postgres) => {
            Value::ChronoDateTimeUtc(Some(datetime(value).ok_or_else(bad)?))
        }
        (ColumnKind::Exact { scale, .. }, Dialect::Sqlite) => Value::BigInt(Some(
            minor_units(&decimal(value).ok_or_else(bad)?, scale).ok_or_else(bad)?,
        )),
        (ColumnKind::Exact { .. }, Dialect::Postgres) => {
            Value::Decimal(Some(decimal(value).ok_or_else(bad)?))
        }
        (ColumnKind::Json, _) => {
            return Err(FilterSqlError::Invalid(
                "JSON columns cannot be compared".into(),
            ));
        }
    })
}

fn date(value: &Json) -> Option<chrono::NaiveDate> {
    let text = value.as_str()?;
    chrono::NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok()
}

fn datetime(value: &Json) -> Option<chrono::DateTime<chrono::Utc>> {
    let text = value.as_str()?;
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    date(value)?.and_hms_opt(0, 0, 0).map(|t| t.and_utc())
}

fn decimal(value: &Json) -> Option<Decimal> {
    match value {
        Json::Number(n) => n.to_string().parse().ok(),
        Json::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// An exact number as an integer count of minor units (`12.34` at scale 2 → `1234`);
/// `None` if it has more digits than the scale, so nothing is rounded silently.
pub fn minor_units(value: &Decimal, scale: u8) -> Option<i64> {
    let scaled = value.checked_mul(Decimal::from(10_i64.checked_pow(u32::from(scale))?))?;
    if scaled.fract() != Decimal::ZERO {
        return None;
    }
    i64::try_from(scaled).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_numbers_become_minor_units_without_rounding() {
        let d = |s: &str| s.parse::<Decimal>().expect("decimal");
        assert_eq!(minor_units(&d("1200.5"), 2), Some(120_050));
        assert_eq!(minor_units(&d("-0.01"), 2), Some(-1));
        assert_eq!(minor_units(&d("0.001"), 2), None);
    }
}
