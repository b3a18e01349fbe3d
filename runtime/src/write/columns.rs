//! Line columns a role may not see or change (`lines.cost: hidden`,
//! `lines.price: read_only`): what a write's lines may say about them, and
//! the stored values a changed line keeps when it leaves them out.

use serde_json::{Map, Value as Json};

use super::prepare::Prepared;
use crate::catalog::EntityModel;
use crate::read::Access;
use crate::record::FieldError;
use crate::record::value::coerce;

/// The errors of the lines in `input` for columns the caller may not touch:
/// a hidden column named in any line (as unknown: its existence is not
/// revealed) and, when `base` is given (the stored record; empty for a new
/// one), a read-only column whose value differs from the line's stored one;
/// a new line may not set it at all. Model logic (computed columns, hooks,
/// workflow effects) is not asked.
pub(crate) fn column_errors(
    entity: &EntityModel,
    input: &Map<String, Json>,
    base: Option<&Prepared>,
    access: &Access,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (table, value) in input {
        if !access.protects_columns(table) {
            continue;
        }
        let (Some(model), Json::Array(rows)) = (entity.lines.get(table), value) else {
            continue;
        };
        let stored = base.and_then(|b| b.lines.get(table));
        for (i, row) in rows.iter().enumerate() {
            let Json::Object(row) = row else { continue };
            let before = stored.and_then(|lines| stored_line(lines, row));
            for (column, value) in row {
                let at = format!("{table}[{i}].{column}");
                if access.hides_column(table, column) {
                    errors.push(FieldError::new(&at, "unknown_field", "no such field"));
                    continue;
                }
                if base.is_none() || !access.is_read_only_column(table, column) {
                    continue;
                }
                let Some(field) = model.fields.get(column) else {
                    continue;
                };
                // A malformed value is the pipeline's to report.
                let Ok(value) = coerce(&at, field, value) else {
                    continue;
                };
                let was = before
                    .and_then(|line| line.get(column))
                    .unwrap_or(&Json::Null);
                if value != *was {
                    errors.push(FieldError::new(
                        &at,
                        "read_only",
                        "this column cannot be changed by you",
                    ));
                }
            }
        }
    }
    errors
}

/// `input` where every line that keeps a stored line (by its `id`) also
/// keeps the stored values of the columns the caller may not see or change
/// and leaves out, instead of clearing them (computed columns are computed
/// again anyway); `None` when nothing is added.
pub(crate) fn keep_columns(
    entity: &EntityModel,
    base: &Prepared,
    input: &Map<String, Json>,
    access: &Access,
) -> Option<Map<String, Json>> {
    let mut out: Option<Map<String, Json>> = None;
    for (table, value) in input {
        if !access.protects_columns(table) {
            continue;
        }
        let (Some(model), Some(stored), Json::Array(rows)) =
            (entity.lines.get(table), base.lines.get(table), value)
        else {
            continue;
        };
        let mut changed = false;
        let mut kept = rows.clone();
        for row in &mut kept {
            let Json::Object(row) = row else { continue };
            let Some(before) = stored_line(stored, row) else {
                continue;
            };
            for (column, was) in before {
                let computed = model
                    .fields
                    .get(column)
                    .is_none_or(|f| f.def.computed.is_some());
                let protected =
                    access.hides_column(table, column) || access.is_read_only_column(table, column);
                if computed || !protected {
                    continue;
                }
                if !row.contains_key(column) {
                    row.insert(column.clone(), was.clone());
                    changed = true;
                }
            }
        }
        if changed {
            out.get_or_insert_with(|| input.clone())
                .insert(table.clone(), Json::Array(kept));
        }
    }
    out
}

/// The stored line `row` keeps: the one with its `id`.
fn stored_line<'a>(
    stored: &'a [Map<String, Json>],
    row: &Map<String, Json>,
) -> Option<&'a Map<String, Json>> {
    let id = row.get("id").and_then(Json::as_i64)?;
    stored
        .iter()
        .find(|line| line.get("id").and_then(Json::as_i64) == Some(id))
}
