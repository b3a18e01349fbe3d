//! Who a notification goes to: roles, user fields and usernames resolved to
//! enabled accounts, each with the addresses the channels need.

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use serde_json::{Map, Value as Json};
use trellis_engine::model::Recipient;

use crate::record::value::from_row;
use crate::store::{ColumnKind, Dialect, StoreError};

const USERS: &str = "trellis_users";
const USER_ROLES: &str = "trellis_user_roles";

/// A recipient's account.
#[derive(Debug, Clone)]
pub struct Person {
    pub id: i64,
    pub username: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    /// The `phone` attribute of the account.
    pub phone: Option<String>,
}

/// The distinct enabled accounts the recipients name, in the order first named.
pub async fn resolve(
    txn: &DatabaseTransaction,
    dialect: Dialect,
    recipients: &[Recipient],
    record: &Map<String, Json>,
) -> Result<Vec<Person>, StoreError> {
    let mut ids: Vec<i64> = Vec::new();
    let mut add = |id: i64| {
        if !ids.contains(&id) {
            ids.push(id);
        }
    };
    for recipient in recipients {
        match recipient {
            Recipient::Role(role) => {
                let mut q = Query::select();
                q.column(Alias::new("user_id"))
                    .from(Alias::new(USER_ROLES))
                    .and_where(Expr::col(Alias::new("role")).eq(role.as_str()))
                    .order_by(Alias::new("user_id"), Order::Asc);
                for row in txn.query_all(&q).await? {
                    add(row.try_get_by_index(0)?);
                }
            }
            Recipient::Field(field) => {
                for id in user_ids(record.get(field)) {
                    add(id);
                }
            }
            Recipient::User(username) => {
                let mut q = Query::select();
                q.column(Alias::new("id"))
                    .from(Alias::new(USERS))
                    .and_where(Expr::col(Alias::new("username")).eq(username.as_str()));
                if let Some(row) = txn.query_one(&q).await? {
                    add(row.try_get_by_index(0)?);
                }
            }
        }
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = Query::select();
    q.columns(["id", "username", "display_name", "email", "attributes"].map(Alias::new))
        .from(Alias::new(USERS))
        .and_where(Expr::col(Alias::new("id")).is_in(ids.iter().copied()))
        .and_where(Expr::col(Alias::new("disabled")).eq(false));
    let mut people = Vec::with_capacity(ids.len());
    for row in txn.query_all(&q).await? {
        let attributes = from_row(&row, "attributes", ColumnKind::Json, dialect)?;
        let phone = match attributes.get("phone") {
            Some(Json::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Some(Json::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        people.push(Person {
            id: row.try_get("", "id")?,
            username: row.try_get("", "username")?,
            display_name: row.try_get("", "display_name")?,
            email: row
                .try_get::<Option<String>>("", "email")?
                .filter(|e| !e.trim().is_empty()),
            phone,
        });
    }
    people.sort_by_key(|p| ids.iter().position(|id| *id == p.id));
    Ok(people)
}

/// The user ids in a user field's value: one id, a list of them, or ids as text.
fn user_ids(value: Option<&Json>) -> Vec<i64> {
    let one = |v: &Json| match v {
        Json::Number(n) => n.as_i64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    match value {
        Some(Json::Array(items)) => items.iter().filter_map(one).collect(),
        Some(v) => one(v).into_iter().collect(),
        None => Vec::new(),
    }
}
