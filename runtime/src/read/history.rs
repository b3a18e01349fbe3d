//! A record's audit trail: who changed what and when, oldest first, under the
//! caller's access (a record outside their rows has no history for them, and
//! hidden fields and line columns are left out of every change).

use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use super::{Access, RecordReader};
use crate::catalog::EntityModel;
use crate::deploy::AUDIT;
use crate::record::RecordError;
use crate::record::value::from_row;
use crate::store::ColumnKind;

/// One audited write.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub at: Json,
    pub user_id: Option<i64>,
    /// `create`, `update` or `delete`.
    pub operation: String,
    /// Field → `[old, new]`. A create lists none: its values are the record's
    /// first version, which the current values and the later changes give.
    pub changes: Map<String, Json>,
}

impl RecordReader {
    pub async fn history(
        &self,
        entity: &EntityModel,
        id: i64,
        access: &Access,
    ) -> Result<Vec<Change>, RecordError> {
        let conn = self.store.connection();
        let mut visible = Query::select();
        visible
            .column(Alias::new("id"))
            .from(Alias::new(entity.table.as_str()))
            .and_where(Expr::col(Alias::new("id")).eq(id))
            .cond_where(self.condition(entity, access, None)?);
        if conn.query_one(&visible).await?.is_none() {
            return Err(RecordError::NotFound {
                entity: entity.name.clone(),
                id,
            });
        }
        let mut q = Query::select();
        q.columns(["at", "user_id", "operation", "changes"].map(Alias::new))
            .from(Alias::new(AUDIT))
            .and_where(Expr::col(Alias::new("app")).eq(entity.app.as_str()))
            .and_where(Expr::col(Alias::new("entity")).eq(entity.name.as_str()))
            .and_where(Expr::col(Alias::new("record_id")).eq(id))
            .order_by(Alias::new("id"), Order::Asc);
        let dialect = self.store.dialect();
        let mut out = Vec::new();
        for row in conn.query_all(&q).await? {
            let text: String = row.try_get("", "changes")?;
            let mut changes = match serde_json::from_str(&text) {
                Ok(Json::Object(map)) => map,
                _ => Map::new(),
            };
            let before = changes.len();
            changes.retain(|field, _| !access.hides(field));
            for (field, change) in changes.iter_mut() {
                // A change of lines shows them without their hidden columns.
                if let Json::Array(sides) = change {
                    for side in sides.iter_mut() {
                        access.redact_lines(field, side);
                    }
                }
            }
            changes.retain(|_, change| match change {
                Json::Array(sides) if sides.len() == 2 => sides[0] != sides[1],
                _ => true,
            });
            if before > 0 && changes.is_empty() {
                // A change to hidden fields only: not even its time is shown.
                continue;
            }
            out.push(Change {
                at: from_row(&row, "at", ColumnKind::DateTime, dialect)?,
                user_id: row.try_get("", "user_id")?,
                operation: row.try_get("", "operation")?,
                changes,
            });
        }
        Ok(out)
    }
}
