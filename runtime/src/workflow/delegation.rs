//! Delegations: between two dates, a deputy takes the tasks of an absent
//! approver (`approvers::deputising` reads them when deciding who may act).

use chrono::NaiveDate;
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, Order, Query};
use serde_json::{Value as Json, json};

use crate::deploy::DELEGATIONS;
use crate::store::{Store, StoreError};

/// Stores a delegation from `user` to `deputy`, both days included.
pub async fn create(
    store: &Store,
    user: i64,
    deputy: i64,
    starts_on: NaiveDate,
    ends_on: NaiveDate,
) -> Result<(), StoreError> {
    let mut insert = Query::insert();
    insert
        .into_table(Alias::new(DELEGATIONS))
        .columns(["user_id", "deputy_id", "starts_on", "ends_on", "created_at"].map(Alias::new))
        .values_panic([
            user.into(),
            deputy.into(),
            day(starts_on).into(),
            day(ends_on).into(),
            store.dialect().time(chrono::Utc::now()).into(),
        ]);
    store.connection().execute(&insert).await?;
    Ok(())
}

/// The delegations `user` gave or received, oldest first.
pub async fn list(store: &Store, user: i64) -> Result<Vec<Json>, StoreError> {
    let mut q = Query::select();
    q.columns(["id", "user_id", "deputy_id", "starts_on", "ends_on"].map(Alias::new))
        .from(Alias::new(DELEGATIONS))
        .cond_where(
            Condition::any()
                .add(Expr::col(Alias::new("user_id")).eq(user))
                .add(Expr::col(Alias::new("deputy_id")).eq(user)),
        )
        .order_by(Alias::new("id"), Order::Asc);
    let mut out = Vec::new();
    for row in store.connection().query_all(&q).await? {
        out.push(json!({
            "id": row.try_get::<i64>("", "id")?,
            "user": row.try_get::<i64>("", "user_id")?,
            "deputy": row.try_get::<i64>("", "deputy_id")?,
            "starts_on": row.try_get::<String>("", "starts_on")?,
            "ends_on": row.try_get::<String>("", "ends_on")?,
        }));
    }
    Ok(out)
}

/// Ends one of `user`'s own delegations; false when they have no such one.
pub async fn remove(store: &Store, user: i64, id: i64) -> Result<bool, StoreError> {
    let mut delete = Query::delete();
    delete
        .from_table(Alias::new(DELEGATIONS))
        .and_where(Expr::col(Alias::new("id")).eq(id))
        .and_where(Expr::col(Alias::new("user_id")).eq(user));
    Ok(store.connection().execute(&delete).await?.rows_affected() > 0)
}

fn day(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}
