//! Who is calling: bearer tokens from `POST /api/v1/auth/token`, checked
//! against the sessions in the database on every request.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::body::JsonBody;
use super::observe::UserSlot;
use super::problem::{Problem, internal};
use crate::permission::User;
use crate::session::{LoginError, SESSION_HOURS, close_session, session_user, sign_in};

/// The signed-in user of a request, and the token they sent.
pub struct Caller {
    pub user: User,
    pub token: String,
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
        let token = bearer(parts).ok_or_else(Problem::unauthorized)?.to_owned();
        let user = session_user(&state.store, &token)
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

/// `POST /api/v1/auth/token`: a session token for a username and password.
pub async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(credentials): JsonBody<Credentials>,
) -> Response {
    let ip = peer.ip().to_string();
    match sign_in(
        &state.store,
        &credentials.username,
        &credentials.password,
        &ip,
    )
    .await
    {
        Ok((user, token)) => Json(json!({
            "token": token,
            "token_type": "Bearer",
            "expires_in": SESSION_HOURS * 3600,
            "user": {"id": user.id, "username": user.username, "roles": user.roles},
        }))
        .into_response(),
        Err(LoginError::Refused) => {
            Problem::new(StatusCode::UNAUTHORIZED, LoginError::Refused.to_string()).into_response()
        }
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
            response
        }
        Err(LoginError::Store(e)) => internal(&e).into_response(),
    }
}

/// `POST /api/v1/auth/logout`: ends the session of the token sent.
pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, Problem> {
    close_session(&state.store, &caller.token)
        .await
        .map_err(|e| internal(&e))?;
    Ok(StatusCode::NO_CONTENT)
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
