//! What a duplicate error tells about the record it collides with: the fields a
//! unique key `show`s (`code CUS-0001, owner Amy Chen`), read in the writing
//! transaction. Users are named, not numbered.

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use serde_json::Value as Json;
use trellis_engine::model::FieldType;

use crate::catalog::EntityModel;
use crate::record::RecordError;
use crate::record::value::from_row;
use crate::store::{ColumnKind, Dialect};

/// `field value` for each shown field of record `id`; fields without a value
/// and fields the entity does not store as a column are left out.
pub(super) async fn shown(
    txn: &DatabaseTransaction,
    dialect: Dialect,
    entity: &EntityModel,
    id: i64,
    show: &[String],
) -> Result<Vec<String>, RecordError> {
    let columns: Vec<(&str, ColumnKind, bool)> = show
        .iter()
        .filter_map(|name| match name.as_str() {
            "created_by" | "updated_by" => Some((name.as_str(), ColumnKind::Integer, true)),
            _ => entity.fields.get(name).map(|f| {
                let user = f.def.kind == FieldType::User && !f.def.multiple;
                (name.as_str(), f.column, user)
            }),
        })
        .collect();
    if columns.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = Query::select();
    q.from(Alias::new(entity.table.as_str()))
        .and_where(Expr::col(Alias::new("id")).eq(id));
    for (name, _, _) in &columns {
        q.column(Alias::new(*name));
    }
    let Some(row) = txn.query_one(&q).await? else {
        return Ok(Vec::new());
    };
    let mut parts = Vec::new();
    for (name, kind, user) in columns {
        let value = match from_row(&row, name, kind, dialect)? {
            Json::Null => continue,
            Json::Number(n) if user => match n.as_i64() {
                Some(user_id) => user_name(txn, user_id).await?,
                None => n.to_string(),
            },
            Json::String(s) => s,
            other => other.to_string(),
        };
        parts.push(format!("{name} {value}"));
    }
    Ok(parts)
}

/// A user's display name, else their login name.
async fn user_name(txn: &DatabaseTransaction, id: i64) -> Result<String, RecordError> {
    let mut q = Query::select();
    q.columns([Alias::new("display_name"), Alias::new("username")])
        .from(Alias::new("trellis_users"))
        .and_where(Expr::col(Alias::new("id")).eq(id));
    let Some(row) = txn.query_one(&q).await? else {
        return Ok(format!("#{id}"));
    };
    let display: Option<String> = row.try_get("", "display_name")?;
    let username: String = row.try_get("", "username")?;
    Ok(display.filter(|d| !d.trim().is_empty()).unwrap_or(username))
}
