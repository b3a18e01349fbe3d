//! Aggregates in SQL: count, sum, average, minimum and maximum, grouped by up to
//! two fields, dates bucketed by day, week, month, quarter or year. Money stays
//! exact: sums are computed by the database over exact columns and averages are
//! divided here from the exact sum and count.

use rust_decimal::Decimal;
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, Func, Order, Query};
use serde::Serialize;
use serde_json::Value as Json;

use super::{Access, RecordReader, column_kind};
use crate::catalog::EntityModel;
use crate::record::RecordError;
use crate::record::value::from_row;
use crate::store::{ColumnKind, Dialect};
use trellis_engine::model::Filter;

/// What is measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Measure {
    Count,
    Sum(String),
    Avg(String),
    Min(String),
    Max(String),
}

impl Measure {
    /// The measured field, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Measure::Count => None,
            Measure::Sum(f) | Measure::Avg(f) | Measure::Min(f) | Measure::Max(f) => Some(f),
        }
    }

    /// `count`, `sum:amount`, `avg:amount`, `min:due`, `max:due`.
    pub fn parse(text: &str) -> Result<Measure, RecordError> {
        let bad = || {
            RecordError::BadQuery(format!(
                "unknown measure `{text}`: use count, sum:field, avg:field, min:field or max:field"
            ))
        };
        match text.split_once(':') {
            None if text == "count" => Ok(Measure::Count),
            Some(("sum", f)) => Ok(Measure::Sum(f.to_owned())),
            Some(("avg", f)) => Ok(Measure::Avg(f.to_owned())),
            Some(("min", f)) => Ok(Measure::Min(f.to_owned())),
            Some(("max", f)) => Ok(Measure::Max(f.to_owned())),
            _ => Err(bad()),
        }
    }
}

/// A date bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Day,
    /// The Monday that starts the week.
    Week,
    Month,
    Quarter,
    Year,
}

/// A grouping: a field, and a bucket for dates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    pub field: String,
    pub bucket: Option<Bucket>,
}

impl Grouping {
    /// `stage` or `created_at:month`.
    pub fn parse(text: &str) -> Result<Grouping, RecordError> {
        let (field, bucket) = match text.split_once(':') {
            None => (text, None),
            Some((f, b)) => (
                f,
                Some(match b {
                    "day" => Bucket::Day,
                    "week" => Bucket::Week,
                    "month" => Bucket::Month,
                    "quarter" => Bucket::Quarter,
                    "year" => Bucket::Year,
                    other => {
                        return Err(RecordError::BadQuery(format!(
                            "unknown date bucket `{other}`: day, week, month, quarter or year"
                        )));
                    }
                }),
            ),
        };
        Ok(Grouping {
            field: field.to_owned(),
            bucket,
        })
    }
}

/// One group of an aggregate: its keys and its measures, in the query's order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub keys: Vec<Json>,
    pub values: Vec<Json>,
}

impl RecordReader {
    /// Aggregates the records the caller may see that match `filter`.
    pub async fn aggregate(
        &self,
        entity: &EntityModel,
        measures: &[Measure],
        group_by: &[Grouping],
        filter: Option<&Filter>,
        access: &Access,
    ) -> Result<Vec<Group>, RecordError> {
        if group_by.len() > 2 {
            return Err(RecordError::BadQuery("group by at most two fields".into()));
        }
        let named = measures.iter().filter_map(Measure::field);
        if let Some(hidden) = named
            .chain(group_by.iter().map(|g| g.field.as_str()))
            .find(|f| access.hides(f))
        {
            return Err(RecordError::BadQuery(format!(
                "{} has no field `{hidden}`",
                entity.name
            )));
        }
        let dialect = self.store.dialect();
        let cond = self.condition(entity, access, filter)?;
        let mut q = Query::select();
        q.from(Alias::new(entity.table.as_str())).cond_where(cond);
        let mut key_kinds = Vec::new();
        for (i, g) in group_by.iter().enumerate() {
            let kind = column_kind(entity, &g.field).ok_or_else(|| {
                RecordError::BadQuery(format!(
                    "cannot group by `{}`: {} has no such field",
                    g.field, entity.name
                ))
            })?;
            if kind == ColumnKind::Json {
                return Err(RecordError::BadQuery(format!(
                    "cannot group by `{}`: it holds several values",
                    g.field
                )));
            }
            let alias = Alias::new(format!("g{i}"));
            match g.bucket {
                Some(bucket) => {
                    if !matches!(kind, ColumnKind::Date | ColumnKind::DateTime) {
                        return Err(RecordError::BadQuery(format!(
                            "`{}` is not a date; it takes no bucket",
                            g.field
                        )));
                    }
                    q.expr_as(bucket_expr(&g.field, kind, bucket, dialect), alias.clone());
                    key_kinds.push(ColumnKind::Text);
                }
                None => {
                    q.expr_as(Expr::col(Alias::new(g.field.as_str())), alias.clone());
                    key_kinds.push(kind);
                }
            }
            q.add_group_by([Expr::col(alias.clone())]);
            q.order_by(alias, Order::Asc);
        }
        // Each measure reads as (kind of the result, SQL expressions).
        let mut plan = Vec::new();
        for (i, m) in measures.iter().enumerate() {
            let numeric = |f: &str| -> Result<ColumnKind, RecordError> {
                match column_kind(entity, f) {
                    Some(k @ (ColumnKind::Integer | ColumnKind::Exact { .. })) => Ok(k),
                    Some(_) => Err(RecordError::BadQuery(format!("`{f}` is not a number"))),
                    None => Err(RecordError::BadQuery(format!(
                        "{} has no field `{f}`",
                        entity.name
                    ))),
                }
            };
            let col = |f: &str| Expr::col(Alias::new(f));
            let (a, b) = (Alias::new(format!("m{i}")), Alias::new(format!("n{i}")));
            match m {
                Measure::Count => {
                    q.expr_as(Func::count(Expr::val(1)), a);
                }
                Measure::Sum(f) => {
                    let kind = numeric(f)?;
                    q.expr_as(Func::sum(col(f)), a);
                    plan.push((i, kind));
                }
                Measure::Avg(f) => {
                    let kind = numeric(f)?;
                    q.expr_as(Func::sum(col(f)), a)
                        .expr_as(Func::count(col(f)), b);
                    plan.push((i, kind));
                }
                Measure::Min(f) | Measure::Max(f) => {
                    let kind = column_kind(entity, f).ok_or_else(|| {
                        RecordError::BadQuery(format!("{} has no field `{f}`", entity.name))
                    })?;
                    // PostgreSQL has no MIN or MAX of booleans or JSON.
                    if matches!(kind, ColumnKind::Boolean | ColumnKind::Json) {
                        return Err(RecordError::BadQuery(format!(
                            "`{f}` has no smallest or largest value"
                        )));
                    }
                    let e = if matches!(m, Measure::Min(_)) {
                        Func::min(col(f))
                    } else {
                        Func::max(col(f))
                    };
                    q.expr_as(e, a);
                    plan.push((i, kind));
                }
            }
        }
        let rows = self.store.connection().query_all(&q).await?;
        let mut groups = Vec::with_capacity(rows.len());
        for row in rows {
            let mut keys = Vec::new();
            for (i, kind) in key_kinds.iter().enumerate() {
                keys.push(from_row(&row, &format!("g{i}"), *kind, dialect)?);
            }
            let mut values = Vec::new();
            for (i, m) in measures.iter().enumerate() {
                let kind = plan.iter().find(|(j, _)| *j == i).map(|(_, k)| *k);
                let name = format!("m{i}");
                values.push(match (m, kind) {
                    (Measure::Count, _) => Json::from(row.try_get::<i64>("", &name)?),
                    (Measure::Sum(_), Some(kind)) => number(sum(&row, &name, kind, dialect)?),
                    (Measure::Avg(_), Some(kind)) => {
                        let total = sum(&row, &name, kind, dialect)?;
                        let n = row.try_get::<i64>("", &format!("n{i}"))?;
                        match (total, n) {
                            (Some(total), n) if n > 0 => Json::String(
                                (total / Decimal::from(n))
                                    .round_dp(6)
                                    .normalize()
                                    .to_string(),
                            ),
                            _ => Json::Null,
                        }
                    }
                    (_, Some(kind)) => from_row(&row, &name, kind, dialect)?,
                    (_, None) => Json::Null,
                });
            }
            groups.push(Group { keys, values });
        }
        Ok(groups)
    }
}

/// An exact sum as text (money) or an integer sum as a number.
fn number(value: Option<Decimal>) -> Json {
    match value {
        None => Json::Null,
        Some(d) if d.scale() == 0 => {
            i64::try_from(d).map_or_else(|_| Json::String(d.to_string()), Json::from)
        }
        Some(d) => Json::String(d.to_string()),
    }
}

/// Reads a SUM exactly: SQLite sums minor units as integers, PostgreSQL sums NUMERIC.
fn sum(
    row: &sea_orm::QueryResult,
    name: &str,
    kind: ColumnKind,
    dialect: Dialect,
) -> Result<Option<Decimal>, RecordError> {
    Ok(match (dialect, kind) {
        (Dialect::Sqlite, ColumnKind::Exact { scale, .. }) => row
            .try_get::<Option<i64>>("", name)?
            .map(|units| Decimal::new(units, u32::from(scale))),
        (Dialect::Sqlite, _) => row.try_get::<Option<i64>>("", name)?.map(Decimal::from),
        (Dialect::Postgres, ColumnKind::Exact { scale, .. }) => {
            row.try_get::<Option<Decimal>>("", name)?.map(|mut d| {
                d.rescale(u32::from(scale));
                d
            })
        }
        // PostgreSQL's SUM over bigint is NUMERIC.
        (Dialect::Postgres, _) => row
            .try_get::<Option<Decimal>>("", name)?
            .map(|d| d.normalize()),
    })
}

/// The SQL expression of a date bucket, as `YYYY-MM-DD`, `YYYY-MM`, `YYYY-Qn` or `YYYY` text.
fn bucket_expr(field: &str, kind: ColumnKind, bucket: Bucket, dialect: Dialect) -> Expr {
    // The identifier comes from the model (checked names only) and is quoted.
    let col = format!("\"{}\"", field.replace('"', "\"\""));
    let sql = match dialect {
        Dialect::Sqlite => match bucket {
            Bucket::Day => format!("substr({col}, 1, 10)"),
            Bucket::Week => format!("date(substr({col}, 1, 10), '-6 days', 'weekday 1')"),
            Bucket::Month => format!("substr({col}, 1, 7)"),
            Bucket::Quarter => format!(
                "substr({col}, 1, 4) || '-Q' || ((CAST(substr({col}, 6, 2) AS INTEGER) + 2) / 3)"
            ),
            Bucket::Year => format!("substr({col}, 1, 4)"),
        },
        Dialect::Postgres => {
            let at = if kind == ColumnKind::DateTime {
                format!("({col} AT TIME ZONE 'UTC')")
            } else {
                col
            };
            match bucket {
                Bucket::Day => format!("to_char({at}, 'YYYY-MM-DD')"),
                Bucket::Week => format!("to_char(date_trunc('week', {at}), 'YYYY-MM-DD')"),
                Bucket::Month => format!("to_char({at}, 'YYYY-MM')"),
                Bucket::Quarter => format!("to_char({at}, 'YYYY') || '-Q' || to_char({at}, 'Q')"),
                Bucket::Year => format!("to_char({at}, 'YYYY')"),
            }
        }
    };
    Expr::cust(sql)
}
