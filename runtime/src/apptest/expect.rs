//! Whether a step's outcome is the one its `expect` describes; each
//! difference as a sentence for the report.

use std::collections::BTreeSet;

use serde_json::{Map, Value as Json};
use trellis_engine::model::Expect;

use super::errors::StepError;
use super::step::Done;
use super::values::Names;

/// Relative tolerance of number comparisons (computed money and ratios).
const TOLERANCE: f64 = 1e-9;

/// What a step did, gathered after it ran.
pub struct Observed {
    pub outcome: Result<Done, StepError>,
    /// The values of the step's record afterwards, as stored (read as the platform).
    pub record: Option<Map<String, Json>>,
    /// The scenario users notified by the step (gathered when `notified` is given).
    pub notified: BTreeSet<String>,
    /// Records created by the step, for each entity `created` names.
    pub created: Vec<(String, u64)>,
}

/// Every way the observation differs from `expect`; empty when it holds.
pub fn differences(expect: &Expect, observed: &Observed, names: &Names) -> Vec<String> {
    let mut out = Vec::new();
    match (&expect.error, &observed.outcome) {
        (Some(wanted), Ok(_)) => out.push(format!(
            "expected the error `{}`{}, but the step succeeded",
            wanted.code,
            wanted
                .field
                .as_ref()
                .map(|f| format!(" on `{f}`"))
                .unwrap_or_default()
        )),
        (Some(wanted), Err(error)) if !error.matches(wanted) => {
            let mut what = format!("expected the error `{}`", wanted.code);
            if let Some(field) = &wanted.field {
                what.push_str(&format!(" on `{field}`"));
            }
            if let Some(text) = &wanted.contains {
                what.push_str(&format!(" containing \"{text}\""));
            }
            out.push(format!("{what}, got {error}"));
        }
        (None, Err(error)) => {
            out.push(format!("the step failed: {error}"));
            return out;
        }
        _ => {}
    }
    if expect.error.is_none() {
        record_expectations(expect, observed, names, &mut out);
    }
    if let Some(notified) = &expect.notified {
        let wanted: BTreeSet<String> = notified.iter().cloned().collect();
        if wanted != observed.notified {
            out.push(format!(
                "expected {} to be notified, but {} {}",
                list(&wanted),
                list(&observed.notified),
                if observed.notified.len() == 1 {
                    "was"
                } else {
                    "were"
                }
            ));
        }
    }
    for (entity, count) in &observed.created {
        let wanted = expect.created.get(entity).copied().unwrap_or_default();
        if wanted != *count {
            out.push(format!(
                "expected {wanted} new `{entity}` record(s), the step created {count}"
            ));
        }
    }
    out
}

/// `fields`, `state` and `count` against what a successful step left.
fn record_expectations(expect: &Expect, observed: &Observed, names: &Names, out: &mut Vec<String>) {
    if let Some(count) = expect.count {
        match &observed.outcome {
            Ok(Done::Count(n)) if *n == count => {}
            Ok(Done::Count(n)) => out.push(format!("expected {count} record(s), got {n}")),
            _ => out.push("`count` applies to `list` and `run_alert` steps".into()),
        }
    }
    if let Some(wanted) = &expect.warnings {
        warning_expectations(wanted, &observed.outcome, out);
    }
    if expect.fields.is_empty() && expect.state.is_none() {
        return;
    }
    let (Ok(Done::Record(entity, _, _)), Some(values)) = (&observed.outcome, &observed.record)
    else {
        out.push("`fields` and `state` need a step that leaves a record".into());
        return;
    };
    if let Some(state) = &expect.state {
        let field = entity.state_field.as_deref().unwrap_or_default();
        let actual = values.get(field).cloned().unwrap_or(Json::Null);
        if actual.as_str() != Some(state.as_str()) {
            out.push(format!(
                "expected the state `{state}`, got {}",
                shown(&actual)
            ));
        }
    }
    let wanted = match names.fields(entity, &expect.fields) {
        Ok(wanted) => wanted,
        Err(e) => {
            out.push(e);
            return;
        }
    };
    for (field, value) in &wanted {
        let actual = values.get(field).unwrap_or(&Json::Null);
        if !same(value, actual) {
            out.push(format!(
                "expected `{field}` = {}, got {}",
                shown(value),
                shown(actual)
            ));
        }
    }
}

/// `warnings`: each text is part of some warning's message; `[]`, none at all.
fn warning_expectations(
    wanted: &[String],
    outcome: &Result<Done, StepError>,
    out: &mut Vec<String>,
) {
    let Ok(Done::Record(_, _, warnings)) = outcome else {
        out.push("`warnings` applies to `create`, `update` and `action` steps".into());
        return;
    };
    let given = || {
        if warnings.is_empty() {
            "none".to_owned()
        } else {
            warnings
                .iter()
                .map(|w| format!("\"{}\"", w.message))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    if wanted.is_empty() && !warnings.is_empty() {
        out.push(format!("expected no warning, got {}", given()));
    }
    for text in wanted {
        if !warnings.iter().any(|w| w.message.contains(text.as_str())) {
            out.push(format!(
                "expected a warning containing \"{text}\", got {}",
                given()
            ));
        }
    }
}

/// Whether an actual value is the expected one: numbers within a relative
/// tolerance (also when stored as decimal text), datetimes as instants, lists
/// item by item, objects (line items) on the keys the expectation names.
pub fn same(expected: &Json, actual: &Json) -> bool {
    match (expected, actual) {
        (Json::Null, Json::Null) => true,
        (Json::Array(a), Json::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        (Json::Object(a), Json::Object(b)) => a
            .iter()
            .all(|(k, v)| same(v, b.get(k).unwrap_or(&Json::Null))),
        (Json::String(x), Json::String(y)) => {
            x == y || instant(x).is_some_and(|t| instant(y) == Some(t))
        }
        _ => match (number(expected), number(actual)) {
            (Some(x), Some(y)) => (x - y).abs() <= TOLERANCE * x.abs().max(y.abs()).max(1.0),
            _ => expected == actual,
        },
    }
}

fn number(value: &Json) -> Option<f64> {
    match value {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s
            .trim()
            .parse::<rust_decimal::Decimal>()
            .ok()
            .and_then(|d| {
                use rust_decimal::prelude::ToPrimitive;
                d.to_f64()
            }),
        _ => None,
    }
}

fn instant(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

fn shown(value: &Json) -> String {
    match value {
        Json::Null => "nothing".into(),
        other => other.to_string(),
    }
}

fn list(names: &BTreeSet<String>) -> String {
    if names.is_empty() {
        "nobody".into()
    } else {
        names.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::same;
    use serde_json::json;

    #[test]
    fn numbers_compare_within_a_tolerance_and_decimal_text_counts_as_a_number() {
        assert!(same(&json!(5.0), &json!(5)));
        assert!(same(&json!(0.3), &json!(0.1 + 0.2)));
        assert!(same(&json!(12.5), &json!("12.50")));
        assert!(!same(&json!(5), &json!(6)));
        assert!(!same(&json!("5"), &json!("five")));
        // Two texts are compared as texts: codes keep their leading zeros.
        assert!(!same(&json!("1"), &json!("001")));
    }

    #[test]
    fn lists_objects_and_datetimes_compare_by_meaning() {
        assert!(same(
            &json!("2026-03-02T08:00:00Z"),
            &json!("2026-03-02T08:00:00.000000Z")
        ));
        assert!(same(&json!([{"qty": 2}]), &json!([{"qty": 2, "id": 9}])));
        assert!(!same(&json!([{"qty": 2}]), &json!([{"qty": 3}])));
        assert!(!same(&json!([1]), &json!([1, 2])));
        assert!(same(&json!(null), &json!(null)));
        assert!(!same(&json!("x"), &json!(null)));
    }
}
