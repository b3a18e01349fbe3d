//! Records: what the write pipeline stores and the reader returns, and the
//! errors both report, field by field.

pub mod value;

use serde::Serialize;
use serde_json::{Map, Value as Json};

/// A record in its API form: system fields and field values, with line items
/// under their table field's name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub id: i64,
    pub version: i64,
    pub values: Map<String, Json>,
    /// Titles of linked records, by link field.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub titles: Map<String, Json>,
}

/// A record as a save left it, with the warnings the save gave: the
/// validation rules of level `warning` that did not hold and what its hooks
/// said with `warn(message)`, each as `{field, code: "warning", message}`.
/// Warnings never refuse; a saved record reads as its [`Record`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Saved {
    pub record: Record,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<FieldError>,
}

impl std::ops::Deref for Saved {
    type Target = Record;

    fn deref(&self) -> &Record {
        &self.record
    }
}

/// The distinct record ids in a link field of several records' values.
pub fn linked_ids<'a>(
    records: impl Iterator<Item = &'a Map<String, Json>>,
    field: &str,
) -> Vec<i64> {
    let mut ids: Vec<i64> = records
        .filter_map(|values| values.get(field).and_then(Json::as_i64))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// One problem with one field of an input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field (`lines[2].qty` inside line items; empty for the whole record).
    pub field: String,
    /// A stable code: `required`, `type`, `min`, `max`, `pattern`, `option`, `unique`,
    /// `unknown_field`, `read_only`, `link`, `rule`…
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, code: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_owned(),
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// Who is acting: the user (none for the system) and the `$user` attributes.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user_id: Option<i64>,
    pub attributes: Map<String, Json>,
    /// The user's roles, for the record API of the hooks their writes run.
    pub roles: Vec<String>,
}

impl Actor {
    /// The platform itself (imports, jobs, tests' fixtures).
    pub fn system() -> Actor {
        Actor::default()
    }

    pub fn user(id: i64) -> Actor {
        let mut attributes = Map::new();
        attributes.insert("id".into(), Json::from(id));
        Actor {
            user_id: Some(id),
            attributes,
            roles: Vec::new(),
        }
    }
}

/// Why a read or write was refused.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the record is invalid: {}", summary(.0))]
    Invalid(Vec<FieldError>),
    #[error("{entity} #{id} not found")]
    NotFound { entity: String, id: i64 },
    #[error(
        "{entity} #{id} was changed by someone else (version {found}, you had {expected}); reload it and try again"
    )]
    Conflict {
        entity: String,
        id: i64,
        expected: i64,
        found: i64,
    },
    #[error("{entity} #{id} cannot be deleted: {count} {by} record(s) link to it")]
    Linked {
        entity: String,
        id: i64,
        by: String,
        count: i64,
    },
    #[error("{entity} #{id} is in state `{state}`, where `{action}` cannot be taken")]
    WrongState {
        entity: String,
        id: i64,
        action: String,
        state: String,
    },
    /// A workflow move the user may not make (not an approver, not the submitter).
    #[error("{0}")]
    Refused(String),
    #[error("the {entity} would be outside the records you may see")]
    OutsideRows { entity: String },
    #[error("bad query: {0}")]
    BadQuery(String),
    #[error("row {row}: {source}")]
    Row {
        row: usize,
        source: Box<RecordError>,
    },
    /// Every refused row of a bulk write that wrote nothing, by input row.
    #[error("{} row(s) refused, nothing written: {}", .0.len(), rows_summary(.0))]
    Rows(Vec<(usize, RecordError)>),
    #[error("unknown entity {0}")]
    UnknownEntity(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl From<sea_orm::DbErr> for RecordError {
    fn from(e: sea_orm::DbErr) -> Self {
        RecordError::Store(e.into())
    }
}

fn rows_summary(rows: &[(usize, RecordError)]) -> String {
    rows.iter()
        .map(|(row, e)| format!("row {row}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn summary(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl RecordError {
    /// The field errors of an invalid record.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            RecordError::Invalid(errors) => errors,
            RecordError::Row { source, .. } => source.field_errors(),
            _ => &[],
        }
    }

    /// The error as field errors, for reports of many rows: those of an
    /// invalid record, or any other refusal as one error of the whole record
    /// (empty field) with a stable code.
    pub fn to_field_errors(&self) -> Vec<FieldError> {
        let code = match self {
            RecordError::Invalid(errors) => return errors.clone(),
            RecordError::Row { source, .. } => return source.to_field_errors(),
            RecordError::Rows(rows) => {
                return rows.iter().flat_map(|(_, e)| e.to_field_errors()).collect();
            }
            RecordError::NotFound { .. } | RecordError::UnknownEntity(_) => "not_found",
            RecordError::Conflict { .. } => "conflict",
            RecordError::Linked { .. } => "linked",
            RecordError::WrongState { .. } => "wrong_state",
            RecordError::Refused(_) | RecordError::OutsideRows { .. } => "forbidden",
            RecordError::BadQuery(_) => "bad_request",
            // The database's own words stay in the server's log.
            RecordError::Store(_) => {
                return vec![FieldError::new("", "server_error", "the server failed")];
            }
        };
        vec![FieldError::new("", code, self.to_string())]
    }
}
