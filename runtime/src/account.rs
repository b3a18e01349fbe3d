//! User accounts: passwords hashed with Argon2id, and the first-run admin.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};

use crate::store::{Dialect, Store, StoreError};

/// Hashes a password as an Argon2id PHC string (with its own random salt).
pub fn hash_password(password: &str) -> Result<String, StoreError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| {
            StoreError::Database(sea_orm::DbErr::Custom(format!("hashing a password: {e}")))
        })
}

/// Whether `password` matches a stored PHC string.
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// A random password of 20 letters and digits.
pub fn generate_password() -> Result<String, StoreError> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0_u8; 20];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::Database(sea_orm::DbErr::Custom(format!("no randomness: {e}"))))?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

/// What creating the first admin did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAccount {
    /// An `admin` account existed already.
    Existing,
    /// Created with the password given by the operator.
    Created,
    /// Created with this generated password, to be shown once.
    Generated(String),
}

/// Creates the `admin` account (role `admin`) unless it exists.
pub async fn ensure_admin(
    store: &Store,
    password: Option<&str>,
) -> Result<AdminAccount, AccountError> {
    let mut find = Query::select();
    find.column(Alias::new("id"))
        .from(Alias::new("trellis_users"))
        .and_where(Expr::col(Alias::new("username")).eq(ADMIN_USERNAME));
    if store.connection().query_one(&find).await?.is_some() {
        return Ok(AdminAccount::Existing);
    }
    let (password, outcome) = match password.filter(|p| !p.is_empty()) {
        Some(p) => (p.to_owned(), AdminAccount::Created),
        None => {
            let p = generate_password()?;
            (p.clone(), AdminAccount::Generated(p))
        }
    };
    let admin = AccountChange {
        username: Some(ADMIN_USERNAME.into()),
        password: Some(password),
        display_name: Some("Administrator".into()),
        roles: Some(vec![crate::permission::ADMIN.into()]),
        ..AccountChange::default()
    };
    match create_user(store, admin).await {
        Ok(_) => Ok(outcome),
        Err(e) => {
            // Another node sharing the database may have created it first (its
            // insert then beat ours to the unique username).
            let exists = store.connection().query_one(&find).await?.is_some();
            if exists {
                Ok(AdminAccount::Existing)
            } else {
                Err(e)
            }
        }
    }
}

/// The first account's name.
pub const ADMIN_USERNAME: &str = "admin";

/// Why an account change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("the username `{0}` is taken")]
    UsernameTaken(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("there is no user #{0}")]
    NotFound(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for AccountError {
    fn from(e: sea_orm::DbErr) -> Self {
        AccountError::Store(e.into())
    }
}

fn invalid(field: &str, message: &str) -> AccountError {
    AccountError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// A change to an account; absent fields stay as they are.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountChange {
    pub username: Option<String>,
    pub password: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub disabled: Option<bool>,
    pub roles: Option<Vec<String>>,
    /// `$user.<name>` values: a portal account's company, an employee number.
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The smallest password length accepted.
pub const MIN_PASSWORD: usize = 8;

/// Whether an enabled account has this id.
pub async fn exists<C: sea_orm::ConnectionTrait>(conn: &C, id: i64) -> Result<bool, StoreError> {
    use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
    let mut q = Query::select();
    q.column(Alias::new("id"))
        .from(Alias::new("trellis_users"))
        .and_where(Expr::col(Alias::new("id")).eq(id))
        .and_where(Expr::col(Alias::new("disabled")).eq(false));
    Ok(conn.query_one(&q).await?.is_some())
}

/// Every account as administrators see it (never its hash).
pub async fn list_users(store: &Store) -> Result<Vec<serde_json::Value>, StoreError> {
    let conn = store.connection();
    let mut q = Query::select();
    q.columns(
        [
            "id",
            "username",
            "display_name",
            "email",
            "disabled",
            "attributes",
            "created_at",
        ]
        .map(Alias::new),
    )
    .from(Alias::new("trellis_users"))
    .order_by(Alias::new("id"), sea_orm::sea_query::Order::Asc);
    let mut roles: std::collections::HashMap<i64, Vec<String>> = Default::default();
    let mut rq = Query::select();
    rq.columns(["user_id", "role"].map(Alias::new))
        .from(Alias::new("trellis_user_roles"))
        .order_by(Alias::new("role"), sea_orm::sea_query::Order::Asc);
    for row in conn.query_all(&rq).await? {
        roles
            .entry(row.try_get("", "user_id")?)
            .or_default()
            .push(row.try_get("", "role")?);
    }
    let dialect = store.dialect();
    let mut out = Vec::new();
    for row in conn.query_all(&q).await? {
        let id: i64 = row.try_get("", "id")?;
        let value = |name: &str, kind| crate::record::value::from_row(&row, name, kind, dialect);
        use crate::store::ColumnKind as K;
        out.push(serde_json::json!({
            "id": id,
            "username": value("username", K::Text)?,
            "display_name": value("display_name", K::Text)?,
            "email": value("email", K::Text)?,
            "disabled": value("disabled", K::Boolean)?,
            "attributes": value("attributes", K::Json)?,
            "created_at": value("created_at", K::DateTime)?,
            "roles": roles.remove(&id).unwrap_or_default(),
        }));
    }
    Ok(out)
}

/// Creates an account (`username` and `password` required) and returns its id.
pub async fn create_user(store: &Store, change: AccountChange) -> Result<i64, AccountError> {
    let txn = store.begin_write().await?;
    let id = create_user_in(&txn, store.dialect(), change).await?;
    txn.commit().await?;
    Ok(id)
}

/// [`create_user`] on a transaction the caller holds (an action that opens a
/// supplier's portal account commits it with the supplier's approval).
pub async fn create_user_in(
    txn: &sea_orm::DatabaseTransaction,
    dialect: Dialect,
    change: AccountChange,
) -> Result<i64, AccountError> {
    let username = change
        .username
        .clone()
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| invalid("username", "a username is required"))?;
    if username.chars().count() > crate::session::MAX_USERNAME {
        return Err(invalid("username", "at most 100 characters"));
    }
    if change.password.is_none() {
        return Err(invalid("password", "a password is required"));
    }
    let now = dialect.time(chrono::Utc::now());
    let mut taken = Query::select();
    taken
        .column(Alias::new("id"))
        .from(Alias::new("trellis_users"))
        .and_where(Expr::col(Alias::new("username")).eq(username.as_str()));
    if txn.query_one(&taken).await?.is_some() {
        return Err(AccountError::UsernameTaken(username));
    }
    let mut insert = Query::insert();
    insert
        .into_table(Alias::new("trellis_users"))
        .columns(["username", "disabled", "created_at"].map(Alias::new))
        .values_panic([username.into(), false.into(), now.into()])
        .returning_col(Alias::new("id"));
    let id: i64 = txn
        .query_one(&insert)
        .await?
        .ok_or_else(|| StoreError::Database(sea_orm::DbErr::RecordNotInserted))?
        .try_get_by_index(0)?;
    apply_change(
        txn,
        dialect,
        id,
        AccountChange {
            username: None,
            ..change
        },
    )
    .await?;
    Ok(id)
}

/// Changes an account. Disabling it ends its sessions.
pub async fn update_user(
    store: &Store,
    id: i64,
    change: AccountChange,
) -> Result<(), AccountError> {
    let txn = store.begin_write().await?;
    let mut exists = Query::select();
    exists
        .column(Alias::new("id"))
        .from(Alias::new("trellis_users"))
        .and_where(Expr::col(Alias::new("id")).eq(id));
    if txn.query_one(&exists).await?.is_none() {
        return Err(AccountError::NotFound(id));
    }
    if change.username.is_some() {
        return Err(invalid("username", "a username cannot be changed"));
    }
    apply_change(&txn, store.dialect(), id, change).await?;
    txn.commit().await?;
    Ok(())
}

async fn apply_change(
    txn: &sea_orm::DatabaseTransaction,
    dialect: Dialect,
    id: i64,
    change: AccountChange,
) -> Result<(), AccountError> {
    let mut update = Query::update();
    update
        .table(Alias::new("trellis_users"))
        .and_where(Expr::col(Alias::new("id")).eq(id));
    let mut any = false;
    if let Some(password) = change.password {
        if password.chars().count() < MIN_PASSWORD {
            return Err(invalid("password", "at least 8 characters"));
        }
        let hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| StoreError::Database(sea_orm::DbErr::Custom(e.to_string())))??;
        update.value(Alias::new("password_hash"), hash);
        any = true;
    }
    if let Some(name) = change.display_name {
        update.value(Alias::new("display_name"), name);
        any = true;
    }
    if let Some(email) = change.email {
        update.value(Alias::new("email"), email);
        any = true;
    }
    if let Some(disabled) = change.disabled {
        update.value(Alias::new("disabled"), disabled);
        any = true;
        if disabled {
            let mut d = Query::delete();
            d.from_table(Alias::new("trellis_sessions"))
                .and_where(Expr::col(Alias::new("user_id")).eq(id));
            txn.execute(&d).await?;
        }
    }
    if let Some(attributes) = change.attributes {
        let value = serde_json::Value::Object(attributes);
        update.value(
            Alias::new("attributes"),
            crate::record::value::to_sql(&value, crate::store::ColumnKind::Json, dialect),
        );
        any = true;
    }
    if any {
        txn.execute(&update).await?;
    }
    if let Some(roles) = change.roles {
        let mut d = Query::delete();
        d.from_table(Alias::new("trellis_user_roles"))
            .and_where(Expr::col(Alias::new("user_id")).eq(id));
        txn.execute(&d).await?;
        let mut roles = roles;
        roles.sort();
        roles.dedup();
        for role in roles {
            let mut insert = Query::insert();
            insert
                .into_table(Alias::new("trellis_user_roles"))
                .columns(["user_id", "role"].map(Alias::new))
                .values_panic([id.into(), role.into()]);
            txn.execute(&insert).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse").expect("hashes");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        let a = generate_password().expect("random");
        assert_eq!(a.len(), 20);
        assert_ne!(a, generate_password().expect("random"));
    }
}
