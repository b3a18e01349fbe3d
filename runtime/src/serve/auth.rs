//! Who is calling: bearer tokens from `POST /api/v1/auth/token` (scripts and
//! integrations) or the session cookie from `POST /api/v1/auth/login` (the web
//! UI), both checked against the sessions in the database on every request.
//! Cookie-authenticated writes must also carry the session's CSRF token.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::body::JsonBody;
use super::observe::UserSlot;
use super::problem::{Problem, internal};
use crate::permission::User;
use crate::session::{LoginError, SESSION_HOURS, close_session, csrf_token, sign_in};

/// The signed-in user of a request, and the token they sent.
pub struct Caller {
    pub user: User,
    pub token: String,
}

/// The session cookie's name.
const COOKIE: &str = "trellis_session";
/// The header carrying the CSRF token on cookie-authenticated writes.
const CSRF_HEADER: &str = "x-csrf-token";

fn cookie(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let token = match (bearer(parts), cookie(parts)) {
            (Some(token), _) => token.to_owned(),
            (None, Some(token)) => {
                let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
                let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
                if !safe && sent != Some(csrf_token(token).as_str()) {
                    return Err(Problem::forbidden(
                        "a write with the session cookie needs the X-CSRF-Token header from sign-in",
                    ));
                }
                token.to_owned()
            }
            (None, None) => return Err(Problem::unauthorized()),
        };
        let user = state
            .sessions
            .user(&state.store, &token)
            .await
            .map_err(|e| internal(&e))?
            .ok_or_else(Problem::unauthorized)?;
        if let Some(slot) = parts.extensions.get::<UserSlot>() {
            let _ = slot.0.set(user.id);
        }
        Ok(Caller { user, token })
    }
}

#[derive(Deserialize)]
pub struct Credentials {
    username: String,
    password: String,
}

/// Signs in, or answers why not: 401 for wrong credentials (one answer for
/// every cause), 429 with `Retry-After` while the account is locked out.
async fn sign_in_or_refuse(
    state: &AppState,
    peer: SocketAddr,
    credentials: Credentials,
) -> Result<(User, String), Response> {
    let ip = peer.ip().to_string();
    let outcome = sign_in(
        &state.store,
        &credentials.username,
        &credentials.password,
        &ip,
    )
    .await;
    match outcome {
        Ok(signed_in) => Ok(signed_in),
        Err(LoginError::Refused) => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            LoginError::Refused.to_string(),
        )
        .into_response()),
        Err(LoginError::LockedOut) => {
            let mut response = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                LoginError::LockedOut.to_string(),
            )
            .into_response();
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(crate::session::LOCKOUT_MINUTES * 60),
            );
            Err(response)
        }
        Err(LoginError::Store(e)) => Err(internal(&e).into_response()),
    }
}

fn user_json(user: &User) -> serde_json::Value {
    json!({"id": user.id, "username": user.username, "roles": user.roles})
}

/// `POST /api/v1/auth/token`: a session token for a username and password.
pub async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(credentials): JsonBody<Credentials>,
) -> Response {
    match sign_in_or_refuse(&state, peer, credentials).await {
        Ok((user, token)) => Json(json!({
            "token": token,
            "token_type": "Bearer",
            "expires_in": SESSION_HOURS * 3600,
            "user": user_json(&user),
        }))
        .into_response(),
        Err(refusal) => refusal,
    }
}

/// `POST /api/v1/auth/login`: signs in the web UI with a session cookie
/// (HttpOnly, SameSite=Strict) and returns the CSRF token its writes must send.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(credentials): JsonBody<Credentials>,
) -> Response {
    match sign_in_or_refuse(&state, peer, credentials).await {
        Ok((user, session)) => {
            let cookie = format!(
                "{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
                SESSION_HOURS * 3600
            );
            (
                [(axum::http::header::SET_COOKIE, cookie)],
                Json(json!({
                    "csrf_token": csrf_token(&session),
                    "expires_in": SESSION_HOURS * 3600,
                    "user": user_json(&user),
                })),
            )
                .into_response()
        }
        Err(refusal) => refusal,
    }
}

/// `POST /api/v1/auth/logout`: ends the session of the token or cookie sent.
pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<Response, Problem> {
    state.sessions.forget(&caller.token);
    close_session(&state.store, &caller.token)
        .await
        .map_err(|e| internal(&e))?;
    let expired = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    Ok((
        StatusCode::NO_CONTENT,
        [(axum::http::header::SET_COOKIE, expired)],
    )
        .into_response())
}

/// `GET /api/v1/me`: the signed-in user.
pub async fn me(caller: Caller) -> Json<serde_json::Value> {
    let user = caller.user;
    Json(json!({
        "id": user.id,
        "username": user.username,
        "roles": user.roles,
        "attributes": user.actor.attributes,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    /// Days until it expires (default 90, at most 3650).
    days: Option<i64>,
}

/// `POST /api/v1/me/tokens`: a named API token for an integration, shown once.
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(new): JsonBody<NewToken>,
) -> Result<Response, Problem> {
    let name = new.name.trim();
    if name.is_empty() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a token needs a name",
        ));
    }
    let days = new.days.unwrap_or(90).clamp(1, 3650);
    let token = crate::session::issue_api_token(&state.store, caller.user.id, name, days)
        .await
        .map_err(|e| internal(&e))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "name": name, "expires_in_days": days})),
    )
        .into_response())
}

/// `GET /api/v1/me/tokens`
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, Problem> {
    let tokens = crate::session::api_tokens(&state.store, caller.user.id)
        .await
        .map_err(|e| internal(&e))?;
    Ok(Json(json!({ "data": tokens })))
}

/// `DELETE /api/v1/me/tokens/{id}`
pub async fn revoke_token(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    caller: Caller,
) -> Result<StatusCode, Problem> {
    let missing = || Problem::not_found(format!("you have no token {id}"));
    let number: i64 = id.parse().map_err(|_| missing())?;
    let revoked = crate::session::revoke_api_token(&state.store, caller.user.id, number)
        .await
        .map_err(|e| internal(&e))?;
    if !revoked {
        return Err(missing());
    }
    // Its hash is not known here; forgetting every cached session makes the
    // revocation immediate on this node.
    state.sessions.clear();
    Ok(StatusCode::NO_CONTENT)
}
