//! Request bodies: JSON, refused as problem details when they do not parse.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::problem::Problem;

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// A JSON body of type `T`; anything else is a 400 (or 413 when too large).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| Problem::new(e.status(), e.body_text()))?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| Problem::bad_request(format!("the body is not the JSON expected: {e}")))
    }
}
