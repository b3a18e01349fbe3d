//! What a step did besides its answer: who was notified and which records
//! were created. A mark taken before the step holds the highest row id of the
//! in-app notifications, the outbox and each watched entity's table; what
//! lies above it afterwards is the step's doing (steps run one at a time).

use std::collections::{BTreeSet, HashMap};

use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Query};
use serde_json::Value as Json;

use super::scenario::email_of;
use super::values::Names;
use crate::catalog::EntityModel;
use crate::notify::{NOTIFICATION_TOPIC, NOTIFICATIONS, OUTBOX};
use crate::store::{Store, StoreError};

/// The highest ids before a step.
pub struct Mark {
    notifications: i64,
    outbox: i64,
    /// By table.
    tables: HashMap<String, i64>,
}

impl Mark {
    /// Takes the mark, watching the tables of `entities`.
    pub async fn take(store: &Store, entities: &[&EntityModel]) -> Result<Mark, StoreError> {
        let mut tables = HashMap::new();
        for entity in entities {
            tables.insert(
                entity.table.clone(),
                highest_id(store, &entity.table).await?,
            );
        }
        Ok(Mark {
            notifications: highest_id(store, NOTIFICATIONS).await?,
            outbox: highest_id(store, OUTBOX).await?,
            tables,
        })
    }

    /// Records of `entity` (watched when the mark was taken) created since.
    pub async fn created(&self, store: &Store, entity: &EntityModel) -> Result<u64, StoreError> {
        let since = self.tables.get(&entity.table).copied().unwrap_or(i64::MAX);
        let mut q = Query::select();
        q.expr(Func::count(Expr::col(Alias::new("id"))))
            .from(Alias::new(entity.table.as_str()))
            .and_where(Expr::col(Alias::new("id")).gt(since));
        let count: i64 = match store.connection().query_one(&q).await? {
            Some(row) => row.try_get_by_index(0)?,
            None => 0,
        };
        Ok(u64::try_from(count).unwrap_or_default())
    }

    /// The scenario users notified since: an in-app notification, or a
    /// notification message in the outbox addressed to their e-mail address
    /// or phone. Accounts outside the scenario are left out.
    pub async fn notified(
        &self,
        store: &Store,
        names: &Names,
    ) -> Result<BTreeSet<String>, StoreError> {
        let conn = store.connection();
        let mut out = BTreeSet::new();
        let mut inbox = Query::select();
        inbox
            .column(Alias::new("user_id"))
            .from(Alias::new(NOTIFICATIONS))
            .and_where(Expr::col(Alias::new("id")).gt(self.notifications));
        for row in conn.query_all(&inbox).await? {
            if let Some(name) = names.user_name(row.try_get_by_index(0)?) {
                out.insert(name.to_owned());
            }
        }
        let mut outbox = Query::select();
        outbox
            .column(Alias::new("payload"))
            .from(Alias::new(OUTBOX))
            .and_where(Expr::col(Alias::new("id")).gt(self.outbox))
            .and_where(Expr::col(Alias::new("topic")).eq(NOTIFICATION_TOPIC));
        for row in conn.query_all(&outbox).await? {
            let text: String = row.try_get_by_index(0)?;
            let payload: Json = serde_json::from_str(&text).unwrap_or_default();
            let to = payload.get("to").and_then(Json::as_str);
            let phone = payload.get("phone").and_then(Json::as_str);
            for (name, _) in &names.users {
                if to == Some(email_of(name).as_str())
                    || phone.is_some_and(|p| names.phones.get(name).is_some_and(|mine| mine == p))
                {
                    out.insert(name.clone());
                }
            }
        }
        Ok(out)
    }
}

/// The highest id of a table (0 when empty).
async fn highest_id(store: &Store, table: &str) -> Result<i64, StoreError> {
    let mut q = Query::select();
    q.expr(Func::max(Expr::col(Alias::new("id"))))
        .from(Alias::new(table));
    let row = store.connection().query_one(&q).await?;
    Ok(row
        .and_then(|r| r.try_get_by_index::<Option<i64>>(0).ok().flatten())
        .unwrap_or(0))
}
