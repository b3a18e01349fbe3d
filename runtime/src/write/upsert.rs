//! Upserts by an external key (orders from an ERP, items from a PIM): each row
//! updates the record whose key fields hold the row's values, or creates one
//! where none does, through the same pipeline as every other write.
//!
//! A record outside the caller's rows is never "found": its row is refused as
//! a unique key would refuse it ("already used by another record"), so the
//! upsert neither changes it, nor names it, nor creates a second record with
//! its key.

use std::collections::HashMap;

use sea_orm::sea_query::{Alias, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::prepare::Context;
use super::{RecordWriter, locked_state, refuse_protected};
use crate::catalog::EntityModel;
use crate::read::Access;
use crate::record::value::coerce;
use crate::record::{Actor, FieldError, RecordError};
use crate::store::ColumnKind;

/// The most rows one upsert request takes: its transaction holds the write
/// lock (database-wide on SQLite) until the last row is written.
pub const MAX_UPSERT_ROWS: usize = 1000;

/// What a failed row does to the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpsertMode {
    /// Any failed row, and nothing is written; every failed row is reported.
    #[default]
    AllOrNothing,
    /// Each row on its own savepoint: good rows are written, failed ones reported.
    PerRow,
}

/// The caller's access for each half of an upsert; `None` where their roles
/// do not allow it.
#[derive(Debug, Clone, Copy)]
pub struct UpsertAccess<'a> {
    pub create: Option<&'a Access>,
    pub update: Option<&'a Access>,
}

/// What an upsert did with one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Created(i64),
    Updated(i64),
}

/// The fields rows are matched on, checked against the entity and the caller.
struct Key<'a> {
    fields: &'a [String],
    /// Text compares trimmed and case-insensitive, as a `normalize` unique key
    /// over the same fields does: otherwise `acme` would miss `ACME`, and the
    /// create that follows would be refused as a duplicate.
    normalize: bool,
}

impl RecordWriter {
    /// Upserts `rows` by the `key` fields, in one write transaction. Each row
    /// updates its one match (patch semantics, the match's version; `update`
    /// access) or creates a record (`create` access). Refused per row: a
    /// missing key value, a key repeated within the request, a key matching
    /// more than one record, a match outside the caller's rows, and anything
    /// the pipeline refuses.
    ///
    /// Returns one outcome per row. In [`UpsertMode::AllOrNothing`] a failed
    /// row rolls everything back and the error is [`RecordError::Rows`], with
    /// every failed row.
    pub async fn upsert_many(
        &self,
        entity: &EntityModel,
        key: &[String],
        rows: Vec<Map<String, Json>>,
        mode: UpsertMode,
        actor: &Actor,
        access: UpsertAccess<'_>,
    ) -> Result<Vec<Result<Upserted, RecordError>>, RecordError> {
        if access.create.is_none() && access.update.is_none() {
            return Err(not_allowed(entity, "create or update"));
        }
        let key = check_key(entity, key, access)?;
        let mut keys: Vec<Result<Vec<Json>, RecordError>> = rows
            .iter()
            .map(|row| key_values(entity, key.fields, row))
            .collect();
        refuse_repeated(&key, &mut keys);
        let cx = self.context(actor, false);
        let txn = self.store.begin_write().await?;
        let mut results = Vec::with_capacity(rows.len());
        for (input, values) in rows.iter().zip(keys) {
            let outcome = match values {
                Ok(values) => {
                    // A savepoint per row: a refused row leaves nothing behind,
                    // and the rows after it are still checked (and, per row, written).
                    let savepoint = txn.begin().await?;
                    let done = self
                        .upsert_one(&savepoint, entity, &key, &values, input, access, &cx)
                        .await;
                    match done {
                        Ok(done) => {
                            savepoint.commit().await?;
                            Ok(done)
                        }
                        // A failure of the database is not the row's fault: stop.
                        Err(e @ RecordError::Store(_)) => return Err(e),
                        Err(e) => {
                            savepoint.rollback().await?;
                            Err(e)
                        }
                    }
                }
                Err(e) => Err(e),
            };
            results.push(outcome);
        }
        if mode == UpsertMode::AllOrNothing && results.iter().any(Result::is_err) {
            txn.rollback().await?;
            let failed = results
                .into_iter()
                .enumerate()
                .filter_map(|(row, r)| r.err().map(|e| (row, e)))
                .collect();
            return Err(RecordError::Rows(failed));
        }
        txn.commit().await?;
        Ok(results)
    }

    /// One row on the caller's transaction: the update of its one match, or a create.
    #[allow(clippy::too_many_arguments)]
    async fn upsert_one(
        &self,
        txn: &DatabaseTransaction,
        entity: &EntityModel,
        key: &Key<'_>,
        values: &[Json],
        input: &Map<String, Json>,
        access: UpsertAccess<'_>,
        cx: &Context<'_>,
    ) -> Result<Upserted, RecordError> {
        let found = self.find_by_key(txn, entity, key, values).await?;
        match found[..] {
            [] => {
                let create = access.create.ok_or_else(|| not_allowed(entity, "create"))?;
                let (id, _) = self.create_in(txn, entity, input, create, cx).await?;
                Ok(Upserted::Created(id))
            }
            [id] => {
                let update = access.update.ok_or_else(|| not_allowed(entity, "update"))?;
                let (current, base) = match self.lock(txn, entity, id, update).await {
                    Err(RecordError::NotFound { .. }) => return Err(key_taken(key)),
                    locked => locked?,
                };
                // As for a PATCH: a record in a locked state changes only through actions.
                if let Some(state) = locked_state(entity, &base) {
                    return Err(RecordError::Invalid(vec![FieldError::new(
                        entity.state_field.as_deref().unwrap_or_default(),
                        "locked",
                        format!(
                            "a record in state `{state}` changes only through workflow actions"
                        ),
                    )]));
                }
                // The key found the record; it is not a change to it (and may
                // be read-only for the caller).
                let patch: Map<String, Json> = input
                    .iter()
                    .filter(|(name, _)| !key.fields.contains(name))
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect();
                refuse_protected(entity, &patch, Some(&base), update)?;
                self.update_in(txn, entity, id, current.version, &base, &patch, update, cx)
                    .await?;
                Ok(Upserted::Updated(id))
            }
            _ => Err(RecordError::Invalid(vec![FieldError::new(
                &key.fields[0],
                "ambiguous_key",
                "more than one record has this key: upsert by fields that are unique",
            )])),
        }
    }

    /// Up to two records whose key fields hold `values`, whoever may see them:
    /// the caller's rows apply when a match is locked, so that a record
    /// outside them is refused rather than created again.
    async fn find_by_key(
        &self,
        txn: &DatabaseTransaction,
        entity: &EntityModel,
        key: &Key<'_>,
        values: &[Json],
    ) -> Result<Vec<i64>, RecordError> {
        let dialect = self.store.dialect();
        let mut q = Query::select();
        q.column(Alias::new("id"))
            .from(Alias::new(entity.table.as_str()))
            .limit(2);
        super::key_matches(
            &mut q,
            entity,
            (key.fields, key.normalize),
            values.iter(),
            dialect,
        );
        let mut ids = Vec::with_capacity(2);
        for row in txn.query_all(&q).await? {
            ids.push(row.try_get_by_index::<i64>(0)?);
        }
        Ok(ids)
    }
}

/// The key must name distinct single-valued fields the caller may see (a
/// hidden one is unknown to them, as everywhere).
fn check_key<'a>(
    entity: &EntityModel,
    fields: &'a [String],
    access: UpsertAccess<'_>,
) -> Result<Key<'a>, RecordError> {
    let mut errors = Vec::new();
    if fields.is_empty() {
        errors.push(FieldError::new(
            "key",
            "required",
            "name the fields that identify a record",
        ));
    }
    for (i, name) in fields.iter().enumerate() {
        let at = format!("key[{i}]");
        let hidden = [access.create, access.update]
            .into_iter()
            .flatten()
            .any(|a| a.hides(name));
        match entity.fields.get(name) {
            None => errors.push(FieldError::new(
                &at,
                "unknown_field",
                format!("`{name}` is not a field of {}", entity.name),
            )),
            Some(_) if hidden => errors.push(FieldError::new(
                &at,
                "unknown_field",
                format!("`{name}` is not a field of {}", entity.name),
            )),
            Some(field) if field.column == ColumnKind::Json => errors.push(FieldError::new(
                &at,
                "type",
                format!("`{name}` holds several values; a key field holds one"),
            )),
            Some(_) if fields[..i].contains(name) => errors.push(FieldError::new(
                &at,
                "duplicate",
                format!("`{name}` is named twice"),
            )),
            Some(_) => {}
        }
    }
    if !errors.is_empty() {
        return Err(RecordError::Invalid(errors));
    }
    let normalize = entity.unique.iter().any(|unique| {
        unique.normalize
            && unique.fields.len() == fields.len()
            && unique.fields.iter().all(|f| fields.contains(f))
    });
    Ok(Key { fields, normalize })
}

/// A row's key values as the pipeline would store them; each is required.
fn key_values(
    entity: &EntityModel,
    key: &[String],
    row: &Map<String, Json>,
) -> Result<Vec<Json>, RecordError> {
    let mut values = Vec::with_capacity(key.len());
    let mut errors = Vec::new();
    for name in key {
        match row.get(name).map(|v| coerce(name, &entity.fields[name], v)) {
            Some(Err(e)) => errors.push(e),
            Some(Ok(v)) if has_value(&v) => values.push(v),
            _ => errors.push(FieldError::new(
                name,
                "required",
                "a key field needs a value",
            )),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(RecordError::Invalid(errors))
    }
}

/// Null and blank text identify nothing (and a unique key ignores them too).
fn has_value(value: &Json) -> bool {
    match value {
        Json::Null => false,
        Json::String(text) => !text.trim().is_empty(),
        _ => true,
    }
}

/// Rows of one request sharing a key are all refused: which of them should
/// win is the sender's decision, not the order of the rows.
fn refuse_repeated(key: &Key<'_>, keys: &mut [Result<Vec<Json>, RecordError>]) {
    let mut rows_of: HashMap<String, Vec<usize>> = HashMap::new();
    for (row, values) in keys.iter().enumerate() {
        if let Ok(values) = values {
            rows_of.entry(key_text(key, values)).or_default().push(row);
        }
    }
    for rows in rows_of.values().filter(|rows| rows.len() > 1) {
        let list = rows
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        for row in rows {
            keys[*row] = Err(RecordError::Invalid(vec![FieldError::new(
                &key.fields[0],
                "duplicate_key",
                format!("rows {list} of this request have the same key"),
            )]));
        }
    }
}

/// A key's values as one comparable text, normalized as the lookup compares them.
fn key_text(key: &Key<'_>, values: &[Json]) -> String {
    let parts: Vec<String> = values
        .iter()
        .map(|v| match (key.normalize, v.as_str()) {
            (true, Some(s)) => s.trim().to_lowercase(),
            _ => v.to_string(),
        })
        .collect();
    serde_json::to_string(&parts).unwrap_or_default()
}

fn not_allowed(entity: &EntityModel, operation: &str) -> RecordError {
    RecordError::Refused(format!(
        "your roles do not allow {operation} on {}",
        entity.name
    ))
}

/// A match outside the caller's rows: refused as a unique key refuses a
/// duplicate, without naming the record.
fn key_taken(key: &Key<'_>) -> RecordError {
    RecordError::Invalid(vec![FieldError::new(
        &key.fields[0],
        "unique",
        "already used by another record",
    )])
}
