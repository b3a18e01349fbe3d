//! The write pipeline, the one place every record write passes:
//! coerce → defaults → computed fields → constraints → validation rules
//! ([`prepare`]), then, in one transaction: number → uniqueness and links →
//! write (with an optimistic version check) → line items by diff → audit row
//! → the entity's `create`/`update` hooks ([`hooks`]; `delete` hooks run
//! before a delete).

pub(crate) mod columns;
mod duplicate;
pub(crate) mod hooks;
pub mod numbering;
pub mod prepare;
pub mod upsert;

use std::sync::Arc;

use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, Func, Query, SimpleExpr};
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use serde_json::{Map, Value as Json, json};
use trellis_engine::model::{OnDelete, RuleEvent};

use crate::catalog::{Catalog, EntityModel};
use crate::deploy::AUDIT;
use crate::read::load::load;
use crate::read::{Access, access_condition};
use crate::record::value::to_sql;
use crate::record::{Actor, FieldError, Record, RecordError, Saved};
use crate::store::{ColumnKind, Store};
use numbering::Blocks;
use prepare::{Context, Prepared, prepare_warned};

/// Runs the write pipeline against a store.
#[derive(Debug, Clone)]
pub struct RecordWriter {
    store: Store,
    catalog: Arc<Catalog>,
    blocks: Arc<Blocks>,
    /// The roles hooks' record API calls run under; without them, only the
    /// platform's own writes may call it.
    permissions: Option<Arc<crate::permission::Permissions>>,
}

impl RecordWriter {
    pub fn new(store: Store, catalog: Arc<Catalog>) -> Self {
        RecordWriter {
            store,
            catalog,
            blocks: Arc::new(Blocks::default()),
            permissions: None,
        }
    }

    /// The same writer, with the roles that hooks of users' writes run under.
    pub fn with_permissions(mut self, permissions: Arc<crate::permission::Permissions>) -> Self {
        self.permissions = Some(permissions);
        self
    }

    /// The clock, user and script engine of one write. `trusted` changes come
    /// from the model (workflow effects), not from a caller's input: they may set
    /// the state field and read-only fields.
    pub(crate) fn context<'a>(&'a self, actor: &'a Actor, trusted: bool) -> Context<'a> {
        let now = self.store.clock().now();
        Context {
            actor,
            today: now.date_naive(),
            now,
            engine: self.catalog.sandbox().engine(),
            trusted,
            hook_depth: Some(0),
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Creates one record; returns it as stored, with the save's warnings.
    pub async fn create(
        &self,
        entity: &EntityModel,
        input: Map<String, Json>,
        actor: &Actor,
        access: &Access,
    ) -> Result<Saved, RecordError> {
        let mut created = self
            .create_many(entity, vec![input], actor, access)
            .await
            .map_err(unwrap_row)?;
        Ok(created.remove(0))
    }

    /// Creates many records through the same pipeline, all or none: the first
    /// invalid input is reported with its row number and nothing is written.
    /// Each record comes back with its own warnings.
    pub async fn create_many(
        &self,
        entity: &EntityModel,
        inputs: Vec<Map<String, Json>>,
        actor: &Actor,
        access: &Access,
    ) -> Result<Vec<Saved>, RecordError> {
        let written = self.insert_warned(entity, inputs, actor, access).await?;
        let mut out = Vec::with_capacity(written.len());
        for (id, warnings) in written {
            let record = self.reload(entity, id).await?;
            out.push(Saved { record, warnings });
        }
        Ok(out)
    }

    /// [`create_many`](Self::create_many) for bulk loads: returns the new ids
    /// without reading the records back (nor their warnings). Rows go in
    /// multi-row statements, so a batch costs a few statements per hundred
    /// records, not several per record.
    pub async fn insert_many(
        &self,
        entity: &EntityModel,
        inputs: Vec<Map<String, Json>>,
        actor: &Actor,
        access: &Access,
    ) -> Result<Vec<i64>, RecordError> {
        let written = self.insert_warned(entity, inputs, actor, access).await?;
        Ok(written.into_iter().map(|(id, _)| id).collect())
    }

    /// Inserts records in one transaction; the new ids, each with its warnings.
    async fn insert_warned(
        &self,
        entity: &EntityModel,
        inputs: Vec<Map<String, Json>>,
        actor: &Actor,
        access: &Access,
    ) -> Result<Vec<(i64, Vec<FieldError>)>, RecordError> {
        for (row, input) in inputs.iter().enumerate() {
            refuse_protected(entity, input, Some(&Prepared::default()), access).map_err(
                |source| RecordError::Row {
                    row,
                    source: Box::new(source),
                },
            )?;
        }
        let cx = self.context(actor, false);
        let mut inherited = Vec::with_capacity(inputs.len());
        for input in &inputs {
            let empty = Prepared::default();
            let conn = self.store.connection();
            inherited.push(self.inherit(conn, entity, &empty, input).await?);
        }
        let (mut prepared, warned) = prepare_all(entity, &inputs, &inherited, &cx)?;
        self.take_block_numbers(entity, &mut prepared, &cx).await?;
        let txn = self.store.begin_write().await?;
        let written = self
            .insert_in(&txn, entity, prepared, warned, access, &cx)
            .await?;
        txn.commit().await?;
        Ok(written)
    }

    /// Creates one record inside a transaction the caller holds (a workflow
    /// action's linked records): the whole pipeline, committed with the caller's.
    /// Returns its id and warnings.
    pub(crate) async fn create_in(
        &self,
        txn: &DatabaseTransaction,
        entity: &EntityModel,
        input: &Map<String, Json>,
        access: &Access,
        cx: &Context<'_>,
    ) -> Result<(i64, Vec<FieldError>), RecordError> {
        refuse_protected(entity, input, Some(&Prepared::default()), access)?;
        let inherited = [self
            .inherit(txn, entity, &Prepared::default(), input)
            .await?];
        let (prepared, warned) =
            prepare_all(entity, std::slice::from_ref(input), &inherited, cx).map_err(unwrap_row)?;
        let written = self
            .insert_in(txn, entity, prepared, warned, access, cx)
            .await
            .map_err(unwrap_row)?;
        written
            .into_iter()
            .next()
            .ok_or(RecordError::BadQuery("the insert returned no id".into()))
    }

    /// Gap-tolerant numbers come from blocks committed on their own, so they are
    /// taken before the write transaction holds the (SQLite: database-wide) write lock.
    async fn take_block_numbers(
        &self,
        entity: &EntityModel,
        prepared: &mut [Prepared],
        cx: &Context<'_>,
    ) -> Result<(), RecordError> {
        let Some(numbering) = entity.numbering.as_ref().filter(|n| !n.gap_free) else {
            return Ok(());
        };
        let series = numbering::series_key(&entity.table, &numbering.pattern, cx.today);
        for record in prepared {
            if record
                .values
                .get(&numbering.field)
                .is_none_or(Json::is_null)
            {
                let n = self.blocks.next(&self.store, &series).await?;
                record.values.insert(
                    numbering.field.clone(),
                    Json::String(numbering::render(&numbering.pattern, cx.today, Some(n))),
                );
            }
        }
        Ok(())
    }

    /// Inserts prepared records (and their lines and audit rows) on `txn`.
    /// Numbers still missing are taken from the series counter inside the
    /// transaction: locked until it ends, so they are gap-free. `warned` holds
    /// each record's warnings so far; returns the ids, each with the record's
    /// warnings once its hooks have run.
    async fn insert_in(
        &self,
        txn: &DatabaseTransaction,
        entity: &EntityModel,
        mut prepared: Vec<Prepared>,
        mut warned: Vec<Vec<FieldError>>,
        access: &Access,
        cx: &Context<'_>,
    ) -> Result<Vec<(i64, Vec<FieldError>)>, RecordError> {
        let actor = cx.actor;
        let single = prepared.len() == 1;
        let at_row = |row: usize, e: RecordError| {
            if single {
                e
            } else {
                RecordError::Row {
                    row,
                    source: Box::new(e),
                }
            }
        };
        duplicates_within(entity, &prepared, cx).map_err(|(row, e)| at_row(row, e))?;
        let numbering = entity.numbering.as_ref().filter(|n| {
            let missing = |r: &Prepared| r.values.get(&n.field).is_none_or(Json::is_null);
            prepared.iter().any(missing)
        });
        let dialect = self.store.dialect();
        if let Some(numbering) = numbering {
            // The counter row stays locked until this transaction ends, and the
            // batch takes its numbers in one step.
            let series = numbering::series_key(&entity.table, &numbering.pattern, cx.today);
            let wanted: Vec<usize> = (0..prepared.len())
                .filter(|i| {
                    prepared[*i]
                        .values
                        .get(&numbering.field)
                        .is_none_or(Json::is_null)
                })
                .collect();
            let last = numbering::advance(txn, dialect, &series, wanted.len() as i64).await?;
            for (k, i) in wanted.iter().enumerate() {
                let n = last - wanted.len() as i64 + 1 + k as i64;
                prepared[*i].values.insert(
                    numbering.field.clone(),
                    Json::String(numbering::render(&numbering.pattern, cx.today, Some(n))),
                );
            }
        }
        self.check_links(txn, entity, &prepared, None, access)
            .await?;
        if !entity.unique.is_empty() {
            let scope = access_condition(&self.catalog, &self.store, entity, access, None)?;
            for (row, record) in prepared.iter().enumerate() {
                self.check_unique(txn, entity, record, None, access, &scope)
                    .await
                    .map_err(|e| at_row(row, e))?;
            }
        }
        let now = dialect.time(cx.now);
        let user = sea_orm::Value::BigInt(actor.user_id);
        let columns: Vec<Alias> = [
            "version",
            "created_at",
            "created_by",
            "updated_at",
            "updated_by",
        ]
        .into_iter()
        .map(Alias::new)
        .chain(entity.fields.keys().map(|n| Alias::new(n.as_str())))
        .collect();
        let mut ids = Vec::with_capacity(prepared.len());
        for chunk in prepared.chunks(ROWS_PER_STATEMENT) {
            let mut insert = Query::insert();
            insert
                .into_table(Alias::new(entity.table.as_str()))
                .columns(columns.clone())
                .returning_col(Alias::new("id"));
            for record in chunk {
                let mut values: Vec<SimpleExpr> = vec![
                    1_i64.into(),
                    now.clone().into(),
                    user.clone().into(),
                    now.clone().into(),
                    user.clone().into(),
                ];
                for (name, field) in &entity.fields {
                    values.push(
                        to_sql(
                            record.values.get(name).unwrap_or(&Json::Null),
                            field.column,
                            dialect,
                        )
                        .into(),
                    );
                }
                // One value per column by construction (system columns, then every field).
                insert.values_panic(values);
            }
            // Both databases return the ids of a multi-row insert in the order of its rows.
            for row in txn.query_all(&insert).await? {
                ids.push(row.try_get_by_index::<i64>(0)?);
            }
        }
        if ids.len() != prepared.len() {
            return Err(RecordError::BadQuery(
                "the insert returned fewer ids than rows".into(),
            ));
        }
        for (name, model) in &entity.lines {
            let mut rows: Vec<Vec<SimpleExpr>> = Vec::new();
            for (id, record) in ids.iter().zip(&prepared) {
                for (i, line) in record.lines.get(name).into_iter().flatten().enumerate() {
                    let mut values: Vec<SimpleExpr> = vec![(*id).into(), (i as i64 + 1).into()];
                    for (child, f) in &model.fields {
                        values.push(
                            to_sql(line.get(child).unwrap_or(&Json::Null), f.column, dialect)
                                .into(),
                        );
                    }
                    rows.push(values);
                }
            }
            insert_lines(txn, model, rows).await?;
        }
        // A create's audit row records who and when, not the values: they are the
        // record's first version, which the current row and the later update rows
        // (old → new) reconstruct. Copying them would double a bulk import's writes.
        let audit: Vec<(i64, Json)> = ids.iter().map(|id| (*id, json!({}))).collect();
        self.audit(txn, entity, "create", actor, cx, audit).await?;
        warned.resize_with(ids.len(), Vec::new);
        if entity.hooks.iter().any(|h| h.on == RuleEvent::Create) {
            for (row, (id, record)) in ids.iter().zip(&prepared).enumerate() {
                let mut written = record.clone();
                written.values.insert("id".into(), Json::from(*id));
                written.values.insert("version".into(), Json::from(1));
                let so_far = std::mem::take(&mut warned[row]);
                warned[row] = self
                    .after_write(
                        txn,
                        entity,
                        RuleEvent::Create,
                        *id,
                        &written,
                        None,
                        so_far,
                        cx,
                    )
                    .await
                    .map_err(|e| at_row(row, e))?;
            }
        }
        self.require_visible(txn, entity, &ids, access).await?;
        Ok(ids.into_iter().zip(warned).collect())
    }

    /// Updates a record from the version the caller read; a stale version is a
    /// conflict. Returns the record as stored, with the save's warnings.
    pub async fn update(
        &self,
        entity: &EntityModel,
        id: i64,
        expected_version: i64,
        patch: Map<String, Json>,
        actor: &Actor,
        access: &Access,
    ) -> Result<Saved, RecordError> {
        refuse_protected(entity, &patch, None, access)?;
        let cx = self.context(actor, false);
        let txn = self.store.begin_write().await?;
        let (current, base) = self.lock(&txn, entity, id, access).await?;
        // Read-only line columns: a line's value must stay what is stored.
        refuse_protected(entity, &patch, Some(&base), access)?;
        if current.version != expected_version {
            return Err(RecordError::Conflict {
                entity: entity.name.clone(),
                id,
                expected: expected_version,
                found: current.version,
            });
        }
        if let Some(state) = locked_state(entity, &base) {
            return Err(RecordError::Invalid(vec![FieldError::new(
                entity.state_field.as_deref().unwrap_or_default(),
                "locked",
                format!("a record in state `{state}` changes only through workflow actions"),
            )]));
        }
        let (_, warnings) = self
            .update_in(
                &txn,
                entity,
                id,
                current.version,
                &base,
                &patch,
                access,
                &cx,
            )
            .await?;
        txn.commit().await?;
        let record = self.reload(entity, id).await?;
        Ok(Saved { record, warnings })
    }

    /// Loads a record for a change, locked until the transaction ends, if it
    /// is inside the caller's rows.
    pub(crate) async fn lock(
        &self,
        txn: &DatabaseTransaction,
        entity: &EntityModel,
        id: i64,
        access: &Access,
    ) -> Result<(Record, Prepared), RecordError> {
        let dialect = self.store.dialect();
        let scope = access_condition(&self.catalog, &self.store, entity, access, None)?;
        load(txn, dialect, entity, id, true, scope)
            .await?
            .ok_or(RecordError::NotFound {
                entity: entity.name.clone(),
                id,
            })
    }

    /// Applies `patch` to a record loaded at `version` (by [`lock`](Self::lock)) on
    /// the caller's transaction: the pipeline, the versioned update, lines by
    /// diff and the audit row. Returns the record as written and its warnings
    /// (once its hooks have run).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn update_in(
        &self,
        txn: &DatabaseTransaction,
        entity: &EntityModel,
        id: i64,
        version: i64,
        base: &Prepared,
        patch: &Map<String, Json>,
        access: &Access,
        cx: &Context<'_>,
    ) -> Result<(Prepared, Vec<FieldError>), RecordError> {
        let dialect = self.store.dialect();
        let actor = cx.actor;
        let scope = access_condition(&self.catalog, &self.store, entity, access, None)?;
        // Lines that leave out columns the caller may not see or change keep them.
        let kept = columns::keep_columns(entity, base, patch, access);
        let patch = kept.as_ref().unwrap_or(patch);
        let inherited = self.inherit(txn, entity, base, patch).await?;
        let (start, change) = inherited.as_ref().map_or((base, patch), |(b, p)| (b, p));
        let (record, mut warnings) =
            prepare_warned(entity, start, change, false, cx).map_err(RecordError::Invalid)?;
        self.check_unique(txn, entity, &record, Some(id), access, &scope)
            .await?;
        self.check_links(
            txn,
            entity,
            std::slice::from_ref(&record),
            Some(base),
            access,
        )
        .await?;
        let mut update = Query::update();
        update
            .table(Alias::new(entity.table.as_str()))
            .value(
                Alias::new("version"),
                Expr::col(Alias::new("version")).add(1),
            )
            .value(Alias::new("updated_at"), dialect.time(cx.now))
            .value(
                Alias::new("updated_by"),
                sea_orm::Value::BigInt(actor.user_id),
            );
        let mut changes = Map::new();
        for (name, field) in &entity.fields {
            let new = record.values.get(name).unwrap_or(&Json::Null);
            let old = base.values.get(name).unwrap_or(&Json::Null);
            if new != old {
                update.value(
                    Alias::new(name.as_str()),
                    to_sql(new, field.column, dialect),
                );
                changes.insert(name.clone(), json!([old, new]));
            }
        }
        update
            .and_where(Expr::col(Alias::new("id")).eq(id))
            .and_where(Expr::col(Alias::new("version")).eq(version));
        // The version condition makes a concurrent writer that slipped past the read
        // (possible only without row locks) update nothing instead of overwriting.
        if txn.execute(&update).await?.rows_affected() != 1 {
            return Err(RecordError::Conflict {
                entity: entity.name.clone(),
                id,
                expected: version,
                found: version + 1,
            });
        }
        for (name, rows) in &record.lines {
            if base.lines.get(name) != Some(rows) {
                changes.insert(name.clone(), json!([base.lines.get(name), rows]));
            }
        }
        self.write_lines(txn, entity, id, &record, base).await?;
        self.audit(
            txn,
            entity,
            "update",
            actor,
            cx,
            vec![(id, Json::Object(changes))],
        )
        .await?;
        if entity.hooks.iter().any(|h| h.on == RuleEvent::Update) {
            let mut written = record.clone();
            written.values.insert("id".into(), Json::from(id));
            written
                .values
                .insert("version".into(), Json::from(version + 1));
            warnings = self
                .after_write(
                    txn,
                    entity,
                    RuleEvent::Update,
                    id,
                    &written,
                    Some(base),
                    warnings,
                    cx,
                )
                .await?;
        }
        self.require_visible(txn, entity, &[id], access).await?;
        Ok((record, warnings))
    }

    /// Deletes a record. Records linking to it are refused (`restrict`, the
    /// default), deleted too (`cascade`) or unlinked (`set_null`), as their link field says.
    pub async fn delete(
        &self,
        entity: &EntityModel,
        id: i64,
        actor: &Actor,
        access: &Access,
    ) -> Result<(), RecordError> {
        let cx = self.context(actor, false);
        let scope = access_condition(&self.catalog, &self.store, entity, access, None)?;
        let txn = self.store.begin_write().await?;
        self.delete_in(&txn, entity, id, &cx, 0, scope).await?;
        txn.commit().await?;
        Ok(())
    }

    async fn delete_in(
        &self,
        txn: &DatabaseTransaction,
        entity: &EntityModel,
        id: i64,
        cx: &Context<'_>,
        depth: usize,
        scope: Condition,
    ) -> Result<(), RecordError> {
        if depth > 16 {
            return Err(RecordError::BadQuery(
                "cascading deletes go deeper than 16 levels".into(),
            ));
        }
        let dialect = self.store.dialect();
        let (_, base) =
            load(txn, dialect, entity, id, true, scope)
                .await?
                .ok_or(RecordError::NotFound {
                    entity: entity.name.clone(),
                    id,
                })?;
        // A record in a locked state is past its author's hands: it changes, and
        // ends, only through workflow actions. (Cascades follow their parent.)
        if let Some(state) = locked_state(entity, &base).filter(|_| depth == 0) {
            return Err(RecordError::Invalid(vec![FieldError::new(
                entity.state_field.as_deref().unwrap_or_default(),
                "locked",
                format!("a record in state `{state}` changes only through workflow actions"),
            )]));
        }
        if entity.hooks.iter().any(|h| h.on == RuleEvent::Delete) {
            let mut record = base.clone();
            record.values.insert("id".into(), Json::from(id));
            self.before_delete(txn, entity, &record, cx).await?;
        }
        for link in &entity.linked_from {
            let mut q = Query::select();
            q.column(Alias::new("id"))
                .from(Alias::new(link.table.as_str()))
                .and_where(Expr::col(Alias::new(link.field.as_str())).eq(id));
            let rows = txn.query_all(&q).await?;
            if rows.is_empty() {
                continue;
            }
            match link.on_delete {
                OnDelete::Restrict => {
                    return Err(RecordError::Linked {
                        entity: entity.name.clone(),
                        id,
                        by: link.entity.clone(),
                        count: rows.len() as i64,
                    });
                }
                OnDelete::SetNull => {
                    let mut u = Query::update();
                    u.table(Alias::new(link.table.as_str()))
                        .value(
                            Alias::new(link.field.as_str()),
                            sea_orm::Value::BigInt(None),
                        )
                        .value(
                            Alias::new("version"),
                            Expr::col(Alias::new("version")).add(1),
                        )
                        .and_where(Expr::col(Alias::new(link.field.as_str())).eq(id));
                    txn.execute(&u).await?;
                }
                OnDelete::Cascade => {
                    let other = self
                        .catalog
                        .entity(&link.app, &link.entity)
                        .ok_or_else(|| RecordError::UnknownEntity(link.entity.clone()))?;
                    for row in rows {
                        let child: i64 = row.try_get_by_index(0)?;
                        Box::pin(self.delete_in(
                            txn,
                            &other,
                            child,
                            cx,
                            depth + 1,
                            Condition::all(),
                        ))
                        .await?;
                    }
                }
            }
        }
        for lines in entity.lines.values() {
            let mut d = Query::delete();
            d.from_table(Alias::new(lines.table.as_str()))
                .and_where(Expr::col(Alias::new("parent_id")).eq(id));
            txn.execute(&d).await?;
        }
        let mut d = Query::delete();
        d.from_table(Alias::new(entity.table.as_str()))
            .and_where(Expr::col(Alias::new("id")).eq(id));
        txn.execute(&d).await?;
        let changes: Map<String, Json> = base
            .values
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), json!([v, null])))
            .collect();
        self.audit(
            txn,
            entity,
            "delete",
            cx.actor,
            cx,
            vec![(id, Json::Object(changes))],
        )
        .await
    }

    /// Refuses a value that another record of the entity already holds, naming
    /// that record if it is inside the caller's rows (`scope`, from `access`).
    async fn check_unique(
        &self,
        txn: &DatabaseTransaction,
        entity: &EntityModel,
        record: &Prepared,
        this: Option<i64>,
        access: &Access,
        scope: &Condition,
    ) -> Result<(), RecordError> {
        let dialect = self.store.dialect();
        for key in &entity.unique {
            let values: Vec<&Json> = key
                .fields
                .iter()
                .map(|f| record.values.get(f).unwrap_or(&Json::Null))
                .collect();
            if values
                .iter()
                .any(|v| v.is_null() || v.as_str().is_some_and(|s| s.trim().is_empty()))
            {
                continue;
            }
            if let Some(when) = &key.when {
                let system = Actor::system();
                let cx = self.context(&system, false);
                if !prepare::condition_holds(entity, when, &record.values, &cx) {
                    continue;
                }
            }
            let mut q = Query::select();
            q.column(Alias::new("id"))
                .from(Alias::new(entity.table.as_str()))
                .limit(1);
            if let Some(title) = &entity.title {
                q.column(Alias::new(title.as_str()));
            }
            key_matches(
                &mut q,
                entity,
                (&key.fields, key.normalize),
                values.iter().copied(),
                dialect,
            );
            if let Some(cond) = key
                .when
                .as_ref()
                .and_then(|when| prepare::sql_condition(entity, when, dialect))
            {
                q.cond_where(cond);
            }
            if let Some(this) = this {
                q.and_where(Expr::col(Alias::new("id")).ne(this));
            }
            if let Some(row) = txn.query_one(&q).await? {
                let other: i64 = row.try_get_by_index(0)?;
                // A record outside the caller's rows does not exist for them: never name it.
                let visible = !access.restricts_rows() || {
                    let mut seen = Query::select();
                    seen.column(Alias::new("id"))
                        .from(Alias::new(entity.table.as_str()))
                        .and_where(Expr::col(Alias::new("id")).eq(other))
                        .cond_where(scope.clone());
                    txn.query_one(&seen).await?.is_some()
                };
                let title = entity
                    .title
                    .as_ref()
                    .and_then(|t| row.try_get::<Option<String>>("", t).ok().flatten());
                let named = match title {
                    _ if !visible => None,
                    Some(t) => Some(format!("{} {t} (#{other})", entity.name)),
                    None => Some(format!("{} #{other}", entity.name)),
                };
                let mut message = match (&key.message, named) {
                    (Some(m), Some(named)) => format!("{}: {named}", m.text("en")),
                    (Some(m), None) => m.text("en").to_owned(),
                    (None, Some(named)) => format!("already used by {named}"),
                    (None, None) => "already used by another record".to_owned(),
                };
                let shown = duplicate::shown(txn, dialect, entity, other, &key.show).await?;
                if !shown.is_empty() {
                    message = format!("{message} ({})", shown.join(", "));
                }
                return Err(RecordError::Invalid(vec![FieldError::new(
                    &key.fields[0],
                    "unique",
                    message,
                )]));
            }
        }
        Ok(())
    }

    /// Links must point at records that exist and that the caller may read (a
    /// record they may not read is missing for them, never confirmed): one query
    /// per link field for the whole batch; the first record naming a missing one
    /// is reported. A link an update keeps (in `before`) was checked when it was set.
    async fn check_links(
        &self,
        txn: &DatabaseTransaction,
        entity: &EntityModel,
        records: &[Prepared],
        before: Option<&Prepared>,
        access: &Access,
    ) -> Result<(), RecordError> {
        for (name, field) in &entity.fields {
            let Some(target) = &field.target_table else {
                continue;
            };
            let ids = crate::record::linked_ids(records.iter().map(|r| &r.values), name);
            if ids.is_empty() {
                continue;
            }
            // The target records the caller may link to: all (`None`), those
            // inside their rows of the target or kept from before, or none.
            let visible = match (access.through(name), self.catalog.entity_by_table(target)) {
                (Some(through), _) if !through.restricts_rows() => None,
                (Some(through), Some(model)) => Some(access_condition(
                    &self.catalog,
                    &self.store,
                    &model,
                    through,
                    None,
                )?),
                _ => Some(Condition::all().add(Expr::val(1).eq(0))),
            };
            let reach = visible.map(|visible| {
                let kept = crate::record::linked_ids(before.map(|b| &b.values).into_iter(), name);
                let mut reach = Condition::any().add(visible);
                if !kept.is_empty() {
                    reach = reach.add(Expr::col(Alias::new("id")).is_in(kept));
                }
                reach
            });
            let mut found = std::collections::HashSet::with_capacity(ids.len());
            for chunk in ids.chunks(1000) {
                let mut q = Query::select();
                q.column(Alias::new("id"))
                    .from(Alias::new(target.as_str()))
                    .and_where(Expr::col(Alias::new("id")).is_in(chunk.iter().copied()));
                if let Some(reach) = &reach {
                    q.cond_where(reach.clone());
                }
                for row in txn.query_all(&q).await? {
                    found.insert(row.try_get_by_index::<i64>(0)?);
                }
            }
            let missing = records.iter().enumerate().find_map(|(i, r)| {
                r.values
                    .get(name)
                    .and_then(Json::as_i64)
                    .filter(|id| !found.contains(id))
                    .map(|id| (i, id))
            });
            if let Some((row, id)) = missing {
                let error = RecordError::Invalid(vec![FieldError::new(
                    name,
                    "link",
                    format!(
                        "no {} #{id}",
                        field.def.target.as_deref().unwrap_or("record")
                    ),
                )]);
                return Err(if records.len() == 1 {
                    error
                } else {
                    RecordError::Row {
                        row,
                        source: Box::new(error),
                    }
                });
            }
        }
        Ok(())
    }

    /// Saves line items by diff against `before`: lines with a known `id` are
    /// updated, new ones inserted, missing ones deleted.
    async fn write_lines(
        &self,
        txn: &DatabaseTransaction,
        entity: &EntityModel,
        parent: i64,
        record: &Prepared,
        before: &Prepared,
    ) -> Result<(), RecordError> {
        let dialect = self.store.dialect();
        for (name, model) in &entity.lines {
            let Some(rows) = record.lines.get(name) else {
                continue;
            };
            let old_ids: Vec<i64> = before
                .lines
                .get(name)
                .into_iter()
                .flatten()
                .filter_map(|l| l.get("id").and_then(Json::as_i64))
                .collect();
            let kept: Vec<i64> = rows
                .iter()
                .filter_map(|l| l.get("id").and_then(Json::as_i64))
                .filter(|id| old_ids.contains(id))
                .collect();
            let gone: Vec<i64> = old_ids
                .iter()
                .copied()
                .filter(|id| !kept.contains(id))
                .collect();
            if !gone.is_empty() {
                let mut d = Query::delete();
                d.from_table(Alias::new(model.table.as_str()))
                    .and_where(Expr::col(Alias::new("id")).is_in(gone));
                txn.execute(&d).await?;
            }
            let mut new_lines: Vec<Vec<SimpleExpr>> = Vec::new();
            for (i, line) in rows.iter().enumerate() {
                let position = i as i64 + 1;
                match line
                    .get("id")
                    .and_then(Json::as_i64)
                    .filter(|id| kept.contains(id))
                {
                    Some(line_id) => {
                        let mut u = Query::update();
                        u.table(Alias::new(model.table.as_str()))
                            .value(Alias::new("position"), position);
                        for (child, f) in &model.fields {
                            u.value(
                                Alias::new(child.as_str()),
                                to_sql(line.get(child).unwrap_or(&Json::Null), f.column, dialect),
                            );
                        }
                        u.and_where(Expr::col(Alias::new("id")).eq(line_id))
                            .and_where(Expr::col(Alias::new("parent_id")).eq(parent));
                        txn.execute(&u).await?;
                    }
                    None => {
                        let mut values: Vec<SimpleExpr> = vec![parent.into(), position.into()];
                        for (child, f) in &model.fields {
                            values.push(
                                to_sql(line.get(child).unwrap_or(&Json::Null), f.column, dialect)
                                    .into(),
                            );
                        }
                        new_lines.push(values);
                    }
                }
            }
            insert_lines(txn, model, new_lines).await?;
        }
        Ok(())
    }

    /// Tree `inherit`: the fields a child leaves empty take its parent's
    /// values. They join the record before the pipeline (as stored values, not
    /// input: a read-only field inherits too), so they are required, computed
    /// with and checked like any other. Read on the write's own connection, so
    /// a parent written earlier in the transaction counts. `None` when nothing
    /// is inherited; otherwise the base and patch to prepare instead.
    async fn inherit<C: ConnectionTrait>(
        &self,
        conn: &C,
        entity: &EntityModel,
        base: &Prepared,
        patch: &Map<String, Json>,
    ) -> Result<Option<(Prepared, Map<String, Json>)>, RecordError> {
        let Some(tree) = entity.tree.as_ref().filter(|t| !t.inherit.is_empty()) else {
            return Ok(None);
        };
        let value = |name: &str| patch.get(name).or_else(|| base.values.get(name));
        let empty = |v: Option<&Json>| match v {
            None | Some(Json::Null) => true,
            Some(Json::String(s)) => s.trim().is_empty(),
            Some(Json::Array(a)) => a.is_empty(),
            _ => false,
        };
        let Some(parent) = value(&tree.parent).and_then(|v| match v {
            Json::String(s) => s.trim().parse::<i64>().ok(),
            other => other.as_i64(),
        }) else {
            return Ok(None);
        };
        let wanted: Vec<&String> = tree
            .inherit
            .iter()
            .filter(|f| entity.fields.contains_key(*f) && empty(value(f)))
            .collect();
        if wanted.is_empty() || base.values.get("id").and_then(Json::as_i64) == Some(parent) {
            return Ok(None);
        }
        let dialect = self.store.dialect();
        // A missing parent is the link check's to report.
        let Some((_, stored)) =
            load(conn, dialect, entity, parent, false, Condition::all()).await?
        else {
            return Ok(None);
        };
        let mut base = base.clone();
        let mut patch = patch.clone();
        for field in wanted {
            if let Some(v) = stored.values.get(field).filter(|v| !empty(Some(v))) {
                base.values.insert(field.clone(), v.clone());
                patch.remove(field);
            }
        }
        Ok(Some((base, patch)))
    }

    /// A record as committed, read back after a write.
    async fn reload(&self, entity: &EntityModel, id: i64) -> Result<Record, RecordError> {
        let conn = self.store.connection();
        let loaded = load(
            conn,
            self.store.dialect(),
            entity,
            id,
            false,
            Condition::all(),
        )
        .await?;
        loaded
            .map(|(record, _)| record)
            .ok_or(RecordError::NotFound {
                entity: entity.name.clone(),
                id,
            })
    }

    /// A caller with a row filter may only write records that stay inside it:
    /// checked in SQL, inside the write transaction, after the write.
    async fn require_visible(
        &self,
        txn: &DatabaseTransaction,
        entity: &EntityModel,
        ids: &[i64],
        access: &Access,
    ) -> Result<(), RecordError> {
        if !access.restricts_rows() {
            return Ok(());
        }
        let scope = access_condition(&self.catalog, &self.store, entity, access, None)?;
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut q = Query::select();
            q.expr(Func::count(Expr::col(Alias::new("id"))))
                .from(Alias::new(entity.table.as_str()))
                .and_where(Expr::col(Alias::new("id")).is_in(chunk.iter().copied()))
                .cond_where(scope.clone());
            let seen: i64 = match txn.query_one(&q).await? {
                Some(row) => row.try_get_by_index(0)?,
                None => 0,
            };
            if seen != chunk.len() as i64 {
                return Err(RecordError::OutsideRows {
                    entity: entity.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Writes one audit row per (record, changes), in as few statements as possible.
    async fn audit(
        &self,
        txn: &DatabaseTransaction,
        entity: &EntityModel,
        operation: &str,
        actor: &Actor,
        cx: &Context<'_>,
        rows: Vec<(i64, Json)>,
    ) -> Result<(), RecordError> {
        let dialect = self.store.dialect();
        let at = dialect.time(cx.now);
        for chunk in rows.chunks(500) {
            let mut insert = Query::insert();
            insert.into_table(Alias::new(AUDIT)).columns(
                [
                    "at",
                    "user_id",
                    "app",
                    "entity",
                    "record_id",
                    "operation",
                    "changes",
                ]
                .map(Alias::new),
            );
            for (id, changes) in chunk {
                insert.values_panic([
                    at.clone().into(),
                    sea_orm::Value::BigInt(actor.user_id).into(),
                    entity.app.clone().into(),
                    entity.name.clone().into(),
                    (*id).into(),
                    operation.into(),
                    changes.to_string().into(),
                ]);
            }
            txn.execute(&insert).await?;
        }
        Ok(())
    }
}

/// Refuses input naming a field the caller may not see (as unknown: its
/// existence is not revealed) or may not change, or lines naming such a
/// column (a read-only one only when `base`, the stored record, is given:
/// it may keep its stored value).
fn refuse_protected(
    entity: &EntityModel,
    input: &Map<String, Json>,
    base: Option<&Prepared>,
    access: &Access,
) -> Result<(), RecordError> {
    let mut errors: Vec<FieldError> = input
        .keys()
        .filter_map(|name| {
            if access.hides(name) {
                Some(FieldError::new(name, "unknown_field", "no such field"))
            } else if access.is_read_only(name) {
                Some(FieldError::new(
                    name,
                    "read_only",
                    "this field cannot be changed by you",
                ))
            } else {
                None
            }
        })
        .collect();
    errors.extend(columns::column_errors(entity, input, base, access));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(RecordError::Invalid(errors))
    }
}

/// Runs the pipeline's pure part over a batch: the prepared records and each
/// one's warnings, or every field error of the first invalid input, with its
/// row number.
fn prepare_all(
    entity: &EntityModel,
    inputs: &[Map<String, Json>],
    inherited: &[Option<(Prepared, Map<String, Json>)>],
    cx: &Context,
) -> Result<(Vec<Prepared>, Vec<Vec<FieldError>>), RecordError> {
    let empty = Prepared::default();
    let prepared: Vec<(Prepared, Vec<FieldError>)> = inputs
        .iter()
        .enumerate()
        .map(|(row, input)| {
            let (base, input) = match inherited.get(row) {
                Some(Some((base, input))) => (base, input),
                _ => (&empty, input),
            };
            prepare_warned(entity, base, input, true, cx).map_err(|errors| RecordError::Row {
                row,
                source: Box::new(RecordError::Invalid(errors)),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(prepared.into_iter().unzip())
}

/// The record's workflow state, if that state is `locked` (edited only by actions).
fn locked_state<'a>(entity: &EntityModel, record: &'a Prepared) -> Option<&'a str> {
    let state = record
        .values
        .get(entity.state_field.as_deref()?)?
        .as_str()?;
    entity.locked_states.contains(state).then_some(state)
}

/// Rows per multi-row statement: well under both databases' parameter limits.
const ROWS_PER_STATEMENT: usize = 500;

/// Inserts line rows (`parent_id`, `position`, then the line fields) in multi-row statements.
async fn insert_lines(
    txn: &DatabaseTransaction,
    model: &crate::catalog::LinesModel,
    rows: Vec<Vec<SimpleExpr>>,
) -> Result<(), RecordError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT * 2) {
        let mut insert = Query::insert();
        let columns = ["parent_id", "position"]
            .into_iter()
            .chain(model.fields.keys().map(String::as_str))
            .map(Alias::new);
        insert
            .into_table(Alias::new(model.table.as_str()))
            .columns(columns);
        for values in chunk {
            // Each row was built as parent_id, position, then every line field: one per column.
            insert.values_panic(values.iter().cloned());
        }
        txn.execute(&insert).await?;
    }
    Ok(())
}

/// Two records of one batch may not share a unique value either; the database
/// has not seen them yet, so they are compared here.
fn duplicates_within(
    entity: &EntityModel,
    records: &[Prepared],
    cx: &Context,
) -> Result<(), (usize, RecordError)> {
    for key in &entity.unique {
        let mut seen: std::collections::HashMap<Vec<String>, usize> =
            std::collections::HashMap::new();
        for (row, record) in records.iter().enumerate() {
            let values: Vec<&Json> = key
                .fields
                .iter()
                .map(|f| record.values.get(f).unwrap_or(&Json::Null))
                .collect();
            let applies = key
                .when
                .as_ref()
                .is_none_or(|w| prepare::condition_holds(entity, w, &record.values, cx));
            if !applies || values.iter().any(|v| v.is_null()) {
                continue;
            }
            let text: Vec<String> = values
                .iter()
                .map(|v| match (key.normalize, v.as_str()) {
                    (true, Some(s)) => s.trim().to_lowercase(),
                    _ => v.to_string(),
                })
                .collect();
            if let Some(first) = seen.insert(text, row) {
                let message = format!("row {first} of the same batch has this value already");
                return Err((
                    row,
                    RecordError::Invalid(vec![FieldError::new(&key.fields[0], "unique", message)]),
                ));
            }
        }
    }
    Ok(())
}

/// Narrows `q` to the records holding `values` in the key's `fields` (text
/// trimmed and case-insensitive when `normalize`), for uniqueness and upserts.
pub(crate) fn key_matches<'a>(
    q: &mut sea_orm::sea_query::SelectStatement,
    entity: &EntityModel,
    (fields, normalize): (&[String], bool),
    values: impl Iterator<Item = &'a Json>,
    dialect: crate::store::Dialect,
) {
    for (name, value) in fields.iter().zip(values) {
        let field = &entity.fields[name];
        let col = Expr::col(Alias::new(name.as_str()));
        match (normalize, value.as_str()) {
            (true, Some(text)) if field.column == ColumnKind::Text => {
                let lowered =
                    SimpleExpr::from(Func::lower(Func::cust(Alias::new("TRIM")).arg(col)));
                q.and_where(lowered.eq(text.trim().to_lowercase()));
            }
            _ => {
                q.and_where(col.eq(to_sql(value, field.column, dialect)));
            }
        }
    }
}

/// A single create reports its error without the row number.
fn unwrap_row(e: RecordError) -> RecordError {
    match e {
        RecordError::Row { source, .. } => *source,
        other => other,
    }
}
