//! A failed step as the codes `expect.error` names. Field errors keep their
//! own code (`required`, `unique`, `guard`, `script`, `read_only`, `link`…);
//! the codes of a value a field refuses (`rule`, `pattern`, `min`, `max`,
//! `type`, `option`…) also answer to `validation`; refusals of the whole
//! request map as the API's statuses do: `not_found`, `conflict` (also
//! `linked` and `wrong_state`), `forbidden`.

use std::fmt;

use trellis_engine::model::ExpectError;

use crate::record::{FieldError, RecordError};

/// Field error codes that mean "this value is not acceptable".
const VALIDATION: [&str; 11] = [
    "rule",
    "pattern",
    "min",
    "max",
    "min_length",
    "max_length",
    "type",
    "option",
    "format",
    "scale",
    "precision",
];

/// One error of a failed step.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorItem {
    /// Every code the error answers to, its own first.
    pub codes: Vec<String>,
    /// The field, empty for the whole record.
    pub field: String,
    pub message: String,
}

/// Why a step failed.
#[derive(Debug, Clone, PartialEq)]
pub struct StepError {
    pub items: Vec<ErrorItem>,
}

impl StepError {
    pub fn from_record(error: &RecordError) -> StepError {
        let mut items = Vec::new();
        collect(error, &mut items);
        StepError { items }
    }

    /// A scheduled run that failed: its field errors, or its message.
    pub fn from_run(message: &str, failure: &[FieldError]) -> StepError {
        if failure.is_empty() {
            return StepError {
                items: vec![item(&["failed"], "", message)],
            };
        }
        StepError {
            items: failure.iter().map(field_item).collect(),
        }
    }

    /// A failure of the scenario itself (a `$key` that names nothing).
    pub fn scenario(message: impl Into<String>) -> StepError {
        StepError {
            items: vec![item(&["scenario"], "", &message.into())],
        }
    }

    /// Whether one of the errors is the one expected.
    pub fn matches(&self, expected: &ExpectError) -> bool {
        self.items.iter().any(|e| {
            e.codes.contains(&expected.code)
                && expected.field.as_ref().is_none_or(|f| *f == e.field)
                && expected
                    .contains
                    .as_ref()
                    .is_none_or(|text| e.message.contains(text.as_str()))
        })
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .items
            .iter()
            .map(|e| {
                let code = e.codes.first().map_or("", String::as_str);
                if e.field.is_empty() {
                    format!("{code}: {}", e.message)
                } else {
                    format!("{code} on `{}`: {}", e.field, e.message)
                }
            })
            .collect();
        f.write_str(&parts.join("; "))
    }
}

fn collect(error: &RecordError, out: &mut Vec<ErrorItem>) {
    let message = error.to_string();
    let codes: &[&str] = match error {
        RecordError::Invalid(errors) => {
            out.extend(errors.iter().map(field_item));
            return;
        }
        RecordError::Row { source, .. } => return collect(source, out),
        RecordError::Rows(rows) => {
            for (_, e) in rows {
                collect(e, out);
            }
            return;
        }
        RecordError::NotFound { .. } | RecordError::UnknownEntity(_) => &["not_found"],
        RecordError::Conflict { .. } => &["conflict"],
        RecordError::Linked { .. } => &["conflict", "linked"],
        RecordError::WrongState { .. } => &["conflict", "wrong_state"],
        RecordError::Refused(_) | RecordError::OutsideRows { .. } => &["forbidden"],
        RecordError::BadQuery(_) => &["bad_request"],
        RecordError::Store(_) => &["database"],
    };
    out.push(item(codes, "", &message));
}

fn field_item(e: &FieldError) -> ErrorItem {
    let mut codes = vec![e.code.clone()];
    if VALIDATION.contains(&e.code.as_str()) {
        codes.push("validation".into());
    }
    if e.code == "script_limit" {
        codes.push("script".into());
    }
    ErrorItem {
        codes,
        field: e.field.clone(),
        message: e.message.clone(),
    }
}

fn item(codes: &[&str], field: &str, message: &str) -> ErrorItem {
    ErrorItem {
        codes: codes.iter().map(|c| (*c).to_owned()).collect(),
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect(code: &str, field: Option<&str>, contains: Option<&str>) -> ExpectError {
        ExpectError {
            code: code.into(),
            field: field.map(str::to_owned),
            contains: contains.map(str::to_owned),
        }
    }

    #[test]
    fn field_errors_answer_to_their_code_and_value_errors_to_validation() {
        let e = StepError::from_record(&RecordError::Invalid(vec![
            FieldError::new("end_date", "rule", "ends before it starts"),
            FieldError::new("approver", "required", "a value is required"),
        ]));
        assert!(e.matches(&expect("validation", Some("end_date"), None)));
        assert!(e.matches(&expect("rule", None, Some("before"))));
        assert!(e.matches(&expect("required", Some("approver"), None)));
        assert!(!e.matches(&expect("validation", Some("approver"), None)));
        assert!(!e.matches(&expect("rule", None, Some("after"))));
        assert!(!e.matches(&expect("unique", None, None)));
    }

    #[test]
    fn refusals_of_the_whole_request_map_like_the_api() {
        let refused = StepError::from_record(&RecordError::Refused("no".into()));
        assert!(refused.matches(&expect("forbidden", None, None)));
        let wrong = StepError::from_record(&RecordError::WrongState {
            entity: "order".into(),
            id: 1,
            action: "ship".into(),
            state: "draft".into(),
        });
        assert!(wrong.matches(&expect("conflict", None, Some("draft"))));
        assert!(wrong.matches(&expect("wrong_state", None, None)));
        let missing = StepError::from_record(&RecordError::NotFound {
            entity: "order".into(),
            id: 1,
        });
        assert!(missing.matches(&expect("not_found", None, None)));
        assert_eq!(missing.to_string(), "not_found: order #1 not found");
    }
}
