//! Loading stored records by id: the record's row and its line items, in API form.

use indexmap::IndexMap;
use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, LockType, Order, Query};
use sea_orm::{ConnectionTrait, QueryResult};
use serde_json::{Map, Value as Json};

use crate::catalog::EntityModel;
use crate::record::value::from_row;
use crate::record::{Record, RecordError};
use crate::store::{ColumnKind, Dialect};
use crate::write::prepare::Prepared;

/// The system columns every record row has, with their kinds.
pub const SYSTEM_COLUMNS: [(&str, ColumnKind); 6] = [
    ("id", ColumnKind::Id),
    ("version", ColumnKind::Integer),
    ("created_at", ColumnKind::DateTime),
    ("created_by", ColumnKind::Integer),
    ("updated_at", ColumnKind::DateTime),
    ("updated_by", ColumnKind::Integer),
];

/// Reads a record row into a map of system and field values.
pub fn row_values(
    row: &QueryResult,
    entity: &EntityModel,
    dialect: Dialect,
) -> Result<Map<String, Json>, RecordError> {
    let mut values = Map::new();
    for (name, kind) in SYSTEM_COLUMNS {
        values.insert(name.to_owned(), from_row(row, name, kind, dialect)?);
    }
    for (name, field) in &entity.fields {
        values.insert(name.clone(), from_row(row, name, field.column, dialect)?);
    }
    Ok(values)
}

/// The columns of a record row, in a fixed order.
pub fn record_columns(entity: &EntityModel) -> Vec<Alias> {
    SYSTEM_COLUMNS
        .iter()
        .map(|(n, _)| Alias::new(*n))
        .chain(entity.fields.keys().map(|n| Alias::new(n.as_str())))
        .collect()
}

/// Loads one record with its lines if it meets `scope` (the caller's rows);
/// `lock` holds its row until the transaction ends (PostgreSQL; SQLite's write
/// transaction already excludes other writers).
pub(crate) async fn load<C: ConnectionTrait>(
    conn: &C,
    dialect: Dialect,
    entity: &EntityModel,
    id: i64,
    lock: bool,
    scope: Condition,
) -> Result<Option<(Record, Prepared)>, RecordError> {
    let mut select = Query::select();
    select
        .columns(record_columns(entity))
        .from(Alias::new(entity.table.as_str()))
        .and_where(Expr::col(Alias::new("id")).eq(id))
        .cond_where(scope);
    if lock && dialect == Dialect::Postgres {
        select.lock(LockType::Update);
    }
    let Some(row) = conn.query_one(&select).await? else {
        return Ok(None);
    };
    let mut values = row_values(&row, entity, dialect)?;
    let version = values.get("version").and_then(Json::as_i64).unwrap_or(0);
    let lines = load_lines(conn, dialect, entity, id).await?;
    let prepared = Prepared {
        values: values.clone(),
        lines: lines.clone(),
    };
    for (name, rows) in lines {
        values.insert(
            name,
            Json::Array(rows.into_iter().map(Json::Object).collect()),
        );
    }
    Ok(Some((
        Record {
            id,
            version,
            values,
            titles: Map::new(),
        },
        prepared,
    )))
}

/// The line items of a record, by table field, in position order.
pub(crate) async fn load_lines<C: ConnectionTrait>(
    conn: &C,
    dialect: Dialect,
    entity: &EntityModel,
    id: i64,
) -> Result<IndexMap<String, Vec<Map<String, Json>>>, RecordError> {
    let mut lines = IndexMap::new();
    for (name, model) in &entity.lines {
        let mut q = Query::select();
        q.column(Alias::new("id"))
            .columns(model.fields.keys().map(|n| Alias::new(n.as_str())))
            .from(Alias::new(model.table.as_str()))
            .and_where(Expr::col(Alias::new("parent_id")).eq(id))
            .order_by(Alias::new("position"), Order::Asc);
        let mut rows = Vec::new();
        for r in conn.query_all(&q).await? {
            let mut line = Map::new();
            line.insert("id".into(), from_row(&r, "id", ColumnKind::Id, dialect)?);
            for (child, f) in &model.fields {
                line.insert(child.clone(), from_row(&r, child, f.column, dialect)?);
            }
            rows.push(line);
        }
        lines.insert(name.clone(), rows);
    }
    Ok(lines)
}
