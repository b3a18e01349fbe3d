//! User accounts: passwords hashed with Argon2id, and the first-run admin.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};

use crate::record::value::datetime_text;
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
) -> Result<AdminAccount, StoreError> {
    let conn = store.connection();
    let mut find = Query::select();
    find.column(Alias::new("id"))
        .from(Alias::new("trellis_users"))
        .and_where(Expr::col(Alias::new("username")).eq("admin"));
    if conn.query_one(&find).await?.is_some() {
        return Ok(AdminAccount::Existing);
    }
    let (password, outcome) = match password.filter(|p| !p.is_empty()) {
        Some(p) => (p.to_owned(), AdminAccount::Created),
        None => {
            let p = generate_password()?;
            (p.clone(), AdminAccount::Generated(p))
        }
    };
    // Argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| StoreError::Database(sea_orm::DbErr::Custom(e.to_string())))??;
    let now: sea_orm::Value = match store.dialect() {
        Dialect::Sqlite => datetime_text(chrono::Utc::now()).into(),
        Dialect::Postgres => chrono::Utc::now().into(),
    };
    let txn = store.begin_write().await?;
    let mut insert = Query::insert();
    insert
        .into_table(Alias::new("trellis_users"))
        .columns(
            [
                "username",
                "display_name",
                "password_hash",
                "disabled",
                "created_at",
            ]
            .map(Alias::new),
        )
        .values_panic([
            "admin".into(),
            "Administrator".into(),
            hash.into(),
            false.into(),
            now.into(),
        ])
        .returning_col(Alias::new("id"));
    let id: i64 = txn
        .query_one(&insert)
        .await?
        .ok_or_else(|| StoreError::Database(sea_orm::DbErr::RecordNotInserted))?
        .try_get_by_index(0)?;
    let mut role = Query::insert();
    role.into_table(Alias::new("trellis_user_roles"))
        .columns(["user_id", "role"].map(Alias::new))
        .values_panic([id.into(), "admin".into()]);
    txn.execute(&role).await?;
    txn.commit().await?;
    Ok(outcome)
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
