//! Errors as RFC 9457 problem details (`application/problem+json`), with the
//! field errors of an invalid record under `errors`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::record::{FieldError, RecordError};

/// One failed request, as the client sees it.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(skip)]
    pub status: StatusCode,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
    /// For bulk writes: the input row the errors belong to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
}

/// A field error in a problem.
#[derive(Debug, Serialize)]
pub struct ProblemField {
    pub field: String,
    pub code: String,
    pub message: String,
    /// For bulk writes refused as a whole: the input row of this error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            detail: Some(detail.into()),
            errors: Vec::new(),
            row: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn unauthorized() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "sign in first: send `Authorization: Bearer <token>` from POST /api/v1/auth/token",
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, detail)
    }

    fn with_fields(mut self, errors: &[FieldError]) -> Problem {
        self.errors = errors
            .iter()
            .map(|e| ProblemField {
                field: e.field.clone(),
                code: e.code.clone(),
                message: e.message.clone(),
                row: None,
            })
            .collect();
        self
    }
}

impl From<RecordError> for Problem {
    fn from(error: RecordError) -> Problem {
        let detail = error.to_string();
        match error {
            RecordError::Invalid(ref errors) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "the record is invalid")
                    .with_fields(errors)
            }
            RecordError::Row { row, source } => {
                let mut problem = Problem::from(*source);
                problem.row = Some(row);
                problem
            }
            // Each row's refusal, whatever its kind, as field errors naming the row.
            RecordError::Rows(ref rows) => {
                let mut problem = Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("{} row(s) refused; nothing was written", rows.len()),
                );
                for (row, error) in rows {
                    let fields = error.to_field_errors().into_iter();
                    problem.errors.extend(fields.map(|e| ProblemField {
                        field: e.field,
                        code: e.code,
                        message: e.message,
                        row: Some(*row),
                    }));
                }
                problem
            }
            RecordError::NotFound { .. } | RecordError::UnknownEntity(_) => {
                Problem::not_found(detail)
            }
            RecordError::Conflict { .. }
            | RecordError::Linked { .. }
            | RecordError::WrongState { .. } => Problem::new(StatusCode::CONFLICT, detail),
            RecordError::OutsideRows { .. } | RecordError::Refused(_) => Problem::forbidden(detail),
            RecordError::BadQuery(_) => Problem::bad_request(detail),
            RecordError::Store(e) => internal(&e),
        }
    }
}

/// A failure of ours, not the client's: logged in full, answered in general.
pub fn internal(error: &dyn std::fmt::Display) -> Problem {
    tracing::error!(%error, "request failed");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the server failed; the error is in its log",
    )
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
