//! Signing in: password checks with a lockout after repeated failures, the
//! login log, and sessions. Sessions live in the database (only a SHA-256 of
//! the token is stored), so every node sharing the database knows them.

use base64::Engine as _;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Query};
use sea_orm::{ConnectionTrait, Value};
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use crate::account::verify_password;
use crate::permission::User;
use crate::record::Actor;
use crate::store::{Store, StoreError};

/// The login log: every attempt, who, from where, and whether it succeeded.
pub const LOGIN_LOG: &str = "trellis_login_log";
/// The longest username accepted.
pub const MAX_USERNAME: usize = 100;
/// How long a session lasts.
pub const SESSION_HOURS: i64 = 12;
/// Failed attempts on one account within [`LOCKOUT_MINUTES`] that lock it.
pub const LOCKOUT_FAILURES: i64 = 5;
pub const LOCKOUT_MINUTES: i64 = 15;

/// Why signing in failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown user, wrong password or disabled account: deliberately one answer.
    #[error("wrong username or password")]
    Refused,
    #[error("too many failed attempts; try again in {LOCKOUT_MINUTES} minutes")]
    LockedOut,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for LoginError {
    fn from(e: sea_orm::DbErr) -> Self {
        LoginError::Store(e.into())
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn token_hash(token: &str) -> String {
    hex_sha256(token.as_bytes())
}

/// The CSRF token of a cookie session: derived from the session token, which
/// the page cannot read (the cookie is HttpOnly) and another site cannot send
/// in a header, so a forged cross-site post never carries it.
pub fn csrf_token(session_token: &str) -> String {
    hex_sha256(format!("csrf\0{session_token}").as_bytes())
}

/// Checks a username and password, logs the attempt, and opens a session:
/// returns the user and the session token (shown to the client once).
pub async fn sign_in(
    store: &Store,
    username: &str,
    password: &str,
    ip: &str,
) -> Result<(User, String), LoginError> {
    // No account has a longer name; the log keeps what could be one.
    if username.chars().count() > MAX_USERNAME {
        let kept: String = username.chars().take(MAX_USERNAME).collect();
        log_attempt(store, &kept, None, ip, false).await?;
        return Err(LoginError::Refused);
    }
    let dialect = store.dialect();
    let conn = store.connection();
    let now = chrono::Utc::now();
    let mut failures = Query::select();
    failures
        .expr(Func::count(Expr::col(Alias::new("id"))))
        .from(Alias::new(LOGIN_LOG))
        .and_where(Expr::col(Alias::new("username")).eq(username))
        .and_where(Expr::col(Alias::new("success")).eq(false))
        .and_where(
            Expr::col(Alias::new("at"))
                .gt(dialect.time(now - chrono::Duration::minutes(LOCKOUT_MINUTES))),
        );
    let recent: i64 = match conn.query_one(&failures).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    };
    let mut find = Query::select();
    find.columns(["id", "password_hash", "disabled"].map(Alias::new))
        .from(Alias::new("trellis_users"))
        .and_where(Expr::col(Alias::new("username")).eq(username));
    let found = conn.query_one(&find).await?;
    let user_id: Option<i64> = found.as_ref().map(|r| r.try_get_by_index(0)).transpose()?;
    if recent >= LOCKOUT_FAILURES {
        log_attempt(store, username, user_id, ip, false).await?;
        return Err(LoginError::LockedOut);
    }
    let hash: Option<String> = found
        .as_ref()
        .map(|r| r.try_get("", "password_hash"))
        .transpose()?
        .flatten();
    let disabled: bool = found
        .as_ref()
        .map(|r| r.try_get("", "disabled"))
        .transpose()?
        .unwrap_or(true);
    let password = password.to_owned();
    // Argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    // An unknown user is checked against a fixed hash so timing does not tell.
    let matches = tokio::task::spawn_blocking(move || match hash {
        Some(hash) => verify_password(&password, &hash),
        None => {
            let _ = verify_password(&password, unknown_user_hash());
            false
        }
    })
    .await
    .unwrap_or(false);
    let ok = matches && !disabled && user_id.is_some();
    log_attempt(store, username, user_id, ip, ok).await?;
    let Some(id) = user_id.filter(|_| ok) else {
        return Err(LoginError::Refused);
    };
    let token = open_session(store, id).await?;
    let user = load_user(store, id).await?.ok_or(LoginError::Refused)?;
    Ok((user, token))
}

/// A hash of a random password, checked for unknown users so that the time a
/// refusal takes does not tell whether the account exists.
fn unknown_user_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let password = crate::account::generate_password().unwrap_or_default();
        crate::account::hash_password(&password).unwrap_or_default()
    })
}

async fn log_attempt(
    store: &Store,
    username: &str,
    user_id: Option<i64>,
    ip: &str,
    success: bool,
) -> Result<(), StoreError> {
    let mut insert = Query::insert();
    insert
        .into_table(Alias::new(LOGIN_LOG))
        .columns(["at", "username", "user_id", "ip", "success"].map(Alias::new))
        .values_panic([
            store.dialect().time(chrono::Utc::now()).into(),
            username.into(),
            Value::BigInt(user_id).into(),
            ip.into(),
            success.into(),
        ]);
    store.connection().execute(&insert).await?;
    Ok(())
}

/// Opens a sign-in session for a user and returns its token.
pub async fn open_session(store: &Store, user_id: i64) -> Result<String, StoreError> {
    issue(store, user_id, None, chrono::Duration::hours(SESSION_HOURS)).await
}

/// Issues a named API token for an integration, valid for `days`; it works
/// like a session token and is revoked the same way.
pub async fn issue_api_token(
    store: &Store,
    user_id: i64,
    name: &str,
    days: i64,
) -> Result<String, StoreError> {
    issue(store, user_id, Some(name), chrono::Duration::days(days)).await
}

async fn issue(
    store: &Store,
    user_id: i64,
    name: Option<&str>,
    lifetime: chrono::Duration,
) -> Result<String, StoreError> {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::Database(sea_orm::DbErr::Custom(format!("no randomness: {e}"))))?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let now = chrono::Utc::now();
    let dialect = store.dialect();
    let mut insert = Query::insert();
    insert
        .into_table(Alias::new("trellis_sessions"))
        .columns(["token_hash", "user_id", "name", "created_at", "expires_at"].map(Alias::new))
        .values_panic([
            token_hash(&token).into(),
            user_id.into(),
            name.map(str::to_owned).into(),
            dialect.time(now).into(),
            dialect.time(now + lifetime).into(),
        ]);
    store.connection().execute(&insert).await?;
    Ok(token)
}

/// A user's named API tokens (never the tokens themselves).
pub async fn api_tokens(store: &Store, user_id: i64) -> Result<Vec<Json>, StoreError> {
    let dialect = store.dialect();
    let mut q = Query::select();
    q.columns(["id", "name", "created_at", "expires_at"].map(Alias::new))
        .from(Alias::new("trellis_sessions"))
        .and_where(Expr::col(Alias::new("user_id")).eq(user_id))
        .and_where(Expr::col(Alias::new("name")).is_not_null())
        .order_by(Alias::new("id"), sea_orm::sea_query::Order::Asc);
    let mut out = Vec::new();
    for row in store.connection().query_all(&q).await? {
        use crate::record::value::from_row;
        use crate::store::ColumnKind as K;
        out.push(serde_json::json!({
            "id": from_row(&row, "id", K::Id, dialect)?,
            "name": from_row(&row, "name", K::Text, dialect)?,
            "created_at": from_row(&row, "created_at", K::DateTime, dialect)?,
            "expires_at": from_row(&row, "expires_at", K::DateTime, dialect)?,
        }));
    }
    Ok(out)
}

/// Revokes one of a user's API tokens; false when they have no such token.
pub async fn revoke_api_token(store: &Store, user_id: i64, id: i64) -> Result<bool, StoreError> {
    let mut d = Query::delete();
    d.from_table(Alias::new("trellis_sessions"))
        .and_where(Expr::col(Alias::new("id")).eq(id))
        .and_where(Expr::col(Alias::new("user_id")).eq(user_id))
        .and_where(Expr::col(Alias::new("name")).is_not_null());
    Ok(store.connection().execute(&d).await?.rows_affected() > 0)
}

/// The user behind a live session token, if the account is still enabled:
/// one statement per request (session, account and roles joined).
pub async fn session_user(store: &Store, token: &str) -> Result<Option<User>, StoreError> {
    let mut q = user_query();
    q.inner_join(
        Alias::new("trellis_sessions"),
        Expr::col((Alias::new("trellis_sessions"), Alias::new("user_id")))
            .equals((Alias::new("trellis_users"), Alias::new("id"))),
    )
    .and_where(
        Expr::col((Alias::new("trellis_sessions"), Alias::new("token_hash"))).eq(token_hash(token)),
    )
    .and_where(
        Expr::col((Alias::new("trellis_sessions"), Alias::new("expires_at")))
            .gt(store.dialect().time(chrono::Utc::now())),
    );
    user_from(store, &q).await
}

/// Recently checked sessions, so a busy client does not cost a database
/// round trip per request. An entry lives [`SessionCache::TTL`]: a session
/// ended or an account disabled on another node stops working within that
/// time (at once on this node, which forgets it).
#[derive(Default)]
pub struct SessionCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (User, std::time::Instant)>>,
}

impl SessionCache {
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(5);
    /// Beyond this many entries, expired ones are swept out.
    const SWEEP_AT: usize = 10_000;

    /// The user of a session token: from the cache, else from the database.
    pub async fn user(&self, store: &Store, token: &str) -> Result<Option<User>, StoreError> {
        let key = token_hash(token);
        if let Ok(entries) = self.entries.lock()
            && let Some((user, at)) = entries.get(&key)
            && at.elapsed() < Self::TTL
        {
            return Ok(Some(user.clone()));
        }
        let user = session_user(store, token).await?;
        if let (Some(user), Ok(mut entries)) = (&user, self.entries.lock()) {
            if entries.len() >= Self::SWEEP_AT {
                entries.retain(|_, (_, at)| at.elapsed() < Self::TTL);
            }
            entries.insert(key, (user.clone(), std::time::Instant::now()));
        }
        Ok(user)
    }

    /// Forgets one session (signed out).
    pub fn forget(&self, token: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&token_hash(token));
        }
    }

    /// Forgets every session (an account changed).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

/// Ends a session.
pub async fn close_session(store: &Store, token: &str) -> Result<(), StoreError> {
    let mut d = Query::delete();
    d.from_table(Alias::new("trellis_sessions"))
        .and_where(Expr::col(Alias::new("token_hash")).eq(token_hash(token)));
    store.connection().execute(&d).await?;
    Ok(())
}

/// An enabled user with their roles and `$user` attributes.
pub async fn load_user(store: &Store, id: i64) -> Result<Option<User>, StoreError> {
    let mut q = user_query();
    q.and_where(Expr::col((Alias::new("trellis_users"), Alias::new("id"))).eq(id));
    user_from(store, &q).await
}

/// An enabled account's columns, one row per role (or one without a role).
fn user_query() -> sea_orm::sea_query::SelectStatement {
    let users = Alias::new("trellis_users");
    let roles = Alias::new("trellis_user_roles");
    let mut q = Query::select();
    q.columns(["id", "username", "attributes"].map(|c| (users.clone(), Alias::new(c))))
        .column((roles.clone(), Alias::new("role")))
        .from(users.clone())
        .left_join(
            roles.clone(),
            Expr::col((roles, Alias::new("user_id"))).equals((users.clone(), Alias::new("id"))),
        )
        .and_where(Expr::col((users, Alias::new("disabled"))).eq(false));
    q
}

async fn user_from(
    store: &Store,
    q: &sea_orm::sea_query::SelectStatement,
) -> Result<Option<User>, StoreError> {
    let rows = store.connection().query_all(q).await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let id: i64 = first.try_get("", "id")?;
    let username: String = first.try_get("", "username")?;
    let attributes = crate::record::value::from_row(
        first,
        "attributes",
        crate::store::ColumnKind::Json,
        store.dialect(),
    )?;
    let mut roles = Vec::new();
    for row in &rows {
        if let Some(role) = row.try_get::<Option<String>>("", "role")? {
            roles.push(role);
        }
    }
    let mut values: Map<String, Json> = match attributes {
        Json::Object(map) => map,
        _ => Map::new(),
    };
    values.insert("id".into(), Json::from(id));
    values.insert("username".into(), Json::from(username.clone()));
    Ok(Some(User {
        id,
        username,
        actor: Actor {
            user_id: Some(id),
            attributes: values,
            roles: roles.clone(),
        },
        roles,
    }))
}
