//! Hooks and jobs: scripts that may change the record they run for and read
//! and write other records through the record API ([`api`]), under the acting
//! user's permissions and inside the transaction of the change.
//!
//! A script runs on a blocking thread (Rhai is synchronous) while the task
//! that holds the transaction answers its record API calls; the sandbox's
//! operation budget and deadline bound it like any script.

pub mod api;

use std::sync::Arc;

use rhai::{Dynamic, Scope};
use sea_orm::DatabaseTransaction;
use serde_json::{Map, Value as Json};
use trellis_engine::model::{Filter, Operation};
use trellis_engine::script::{CompiledScript, FailureKind, ScriptOrigin};

use crate::catalog::{Catalog, EntityModel};
use crate::read::load::load_lines;
use crate::read::{Access, ListQuery, RecordReader};
use crate::record::{FieldError, Record, RecordError};
use crate::write::RecordWriter;
use crate::write::prepare::{Context, Prepared, WARNING, push_context, record_map};
use api::Call;

/// The most records one `find` returns.
pub const FIND_LIMIT: u64 = 500;

/// A compiled hook or job script and where it is written.
#[derive(Debug, Clone)]
pub struct Script {
    /// What errors call it: ``rule `book_budget` ``, ``job `leave.close` ``, `` `run` effect``.
    pub name: String,
    pub origin: ScriptOrigin,
    pub compiled: CompiledScript,
}

/// What a script sees besides `user`, `today` and `now`.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    /// The record the hook runs for (`record`), changes to which are returned.
    pub record: Option<Dynamic>,
    pub old: Option<Dynamic>,
    pub action: Option<String>,
    pub comment: Option<String>,
}

/// The access the acting user has to an entity for an operation, if any.
pub type AccessFor<'a> = dyn Fn(&EntityModel, Operation) -> Option<Access> + Sync + 'a;

/// Everything a script's record API calls need: the transaction, the write
/// pipeline, the reader and the acting user's permissions.
pub struct HookRun<'a> {
    pub txn: &'a DatabaseTransaction,
    pub writer: &'a RecordWriter,
    pub reader: &'a RecordReader,
    pub catalog: &'a Catalog,
    /// The app whose entities plain names (`find("invoice", …)`) mean.
    pub app: &'a str,
    /// The acting user, clock and engine; writes go through the pipeline as
    /// the user's own would.
    pub cx: &'a Context<'a>,
    pub access: &'a AccessFor<'a>,
}

/// What a script run left.
#[derive(Debug, Default)]
pub struct Ran {
    /// The `record` variable as the script left it (when there was one).
    pub record: Option<Map<String, Json>>,
    /// What the script said with `warn(message)`, in order: warnings of the
    /// whole record (empty field, code `warning`).
    pub warnings: Vec<FieldError>,
}

impl HookRun<'_> {
    /// Runs `script` and answers its record API calls until it ends.
    pub async fn run(&self, script: &Script, vars: Vars) -> Result<Ran, RecordError> {
        let mut scope = Scope::new();
        let has_record = vars.record.is_some();
        scope.push_dynamic("record", vars.record.unwrap_or(Dynamic::UNIT));
        scope.push_dynamic("old", vars.old.unwrap_or(Dynamic::UNIT));
        scope.push_dynamic("action", vars.action.map_or(Dynamic::UNIT, Dynamic::from));
        scope.push_dynamic("comment", vars.comment.map_or(Dynamic::UNIT, Dynamic::from));
        push_context(&mut scope, self.cx);
        let sandbox = self.catalog.shared_sandbox();
        let compiled = script.compiled.clone();
        let (sender, mut calls) = tokio::sync::mpsc::unbounded_channel();
        let mut running = tokio::task::spawn_blocking(move || {
            let _connected = api::connect(sender);
            // The run has this thread to itself: what `warn` says here is its own.
            let collector = trellis_engine::script::collect_warnings();
            let result = sandbox.run(&mut scope, &compiled);
            let warned = collector.finish();
            let record = scope.get_value::<Dynamic>("record");
            (result, record, warned)
        });
        let (result, record, warned) = loop {
            tokio::select! {
                Some((call, answer)) = calls.recv() => {
                    let _ = answer.send(self.serve(call).await);
                }
                done = &mut running => {
                    break done.map_err(|e| RecordError::BadQuery(format!("a script's thread failed: {e}")))?;
                }
            }
        };
        if let Err(failure) = result {
            let code = match failure.kind {
                // The model said no: its message is the whole answer.
                FailureKind::Refused => {
                    return Err(RecordError::Invalid(vec![FieldError::new(
                        "",
                        "guard",
                        failure.message,
                    )]));
                }
                FailureKind::Limit => "script_limit",
                FailureKind::Thrown => "hook",
                FailureKind::Error => "script",
            };
            return Err(RecordError::Invalid(vec![FieldError::new(
                "",
                code,
                format!(
                    "{} ({}): {}",
                    script.name,
                    script.origin.at(failure.line),
                    failure.message
                ),
            )]));
        }
        Ok(Ran {
            record: record
                .filter(|_| has_record)
                .and_then(|r| r.try_cast::<rhai::Map>())
                .map(api::map_of),
            warnings: warned
                .into_iter()
                .map(|message| FieldError::new("", WARNING, message))
                .collect(),
        })
    }

    /// Answers one record API call on the transaction.
    async fn serve(&self, call: Call) -> Result<Dynamic, String> {
        let answer = match call {
            Call::Find { entity, filter } => {
                let (entity, access) = self.resolve(&entity, Operation::Read)?;
                let query = ListQuery {
                    filter: Some(Filter(filter)),
                    limit: Some(FIND_LIMIT),
                    ..ListQuery::default()
                };
                let page = self
                    .reader
                    .list_on(self.txn, &entity, &query, &access)
                    .await;
                match page {
                    Ok(page) => {
                        let mut found = rhai::Array::with_capacity(page.records.len());
                        for mut record in page.records {
                            // A list leaves lines out; a script gets whole records, as `get` gives.
                            if !entity.lines.is_empty() {
                                let dialect = self.writer.store().dialect();
                                let lines = load_lines(self.txn, dialect, &entity, record.id).await;
                                let lines = lines.map_err(|e| e.to_string())?;
                                for (name, rows) in lines {
                                    record.values.insert(
                                        name,
                                        Json::Array(rows.into_iter().map(Json::Object).collect()),
                                    );
                                }
                                access.redact(&mut record);
                            }
                            found.push(typed(&entity, record));
                        }
                        Ok(Dynamic::from_array(found))
                    }
                    Err(e) => Err(e),
                }
            }
            Call::Get { entity, id } => {
                let (entity, access) = self.resolve(&entity, Operation::Read)?;
                match self.reader.get_on(self.txn, &entity, id, &access).await {
                    Err(RecordError::NotFound { .. }) => Ok(Dynamic::UNIT),
                    other => other.map(|r| typed(&entity, r)),
                }
            }
            Call::Create { entity, values } => {
                let (entity, access) = self.resolve(&entity, Operation::Create)?;
                match self
                    .writer
                    .create_in(self.txn, &entity, &values, &access, self.cx)
                    .await
                {
                    // The warnings of a record a hook writes are not the change's.
                    Ok((id, _)) => self
                        .reader
                        .get_on(self.txn, &entity, id, &access)
                        .await
                        .map(|r| typed(&entity, r)),
                    Err(e) => Err(e),
                }
            }
            Call::Update { entity, id, values } => {
                let (entity, access) = self.resolve(&entity, Operation::Update)?;
                self.update(&entity, id, &values, &access).await
            }
        };
        answer.map_err(|e| match e {
            RecordError::Invalid(errors) => errors
                .iter()
                .map(|f| {
                    if f.field.is_empty() {
                        f.message.clone()
                    } else {
                        format!("{}: {}", f.field, f.message)
                    }
                })
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        })
    }

    async fn update(
        &self,
        entity: &EntityModel,
        id: i64,
        values: &Map<String, Json>,
        access: &Access,
    ) -> Result<Dynamic, RecordError> {
        let (current, base) = self.writer.lock(self.txn, entity, id, access).await?;
        self.writer
            .update_in(
                self.txn,
                entity,
                id,
                current.version,
                &base,
                values,
                access,
                self.cx,
            )
            .await?;
        // Read back as the user sees it: a hook never learns a hidden field.
        self.reader
            .get_on(self.txn, entity, id, access)
            .await
            .map(|r| typed(entity, r))
    }

    /// The entity a script names (`invoice` in the hook's app, or
    /// `crm.customer`) and the user's access to it for `op`.
    fn resolve(&self, name: &str, op: Operation) -> Result<(Arc<EntityModel>, Access), String> {
        let (app, entity) = name.split_once('.').unwrap_or((self.app, name));
        let entity = self
            .catalog
            .entity(app, entity)
            .ok_or_else(|| format!("there is no entity `{name}`"))?;
        let access = (self.access)(&entity, op)
            .ok_or_else(|| format!("the acting user may not {} `{name}` records", verb(op)))?;
        Ok((entity, access))
    }
}

fn verb(op: Operation) -> &'static str {
    match op {
        Operation::Create => "create",
        Operation::Read => "read",
        Operation::Update => "update",
        Operation::Delete => "delete",
        Operation::Export => "export",
        Operation::Import => "import",
        Operation::Print => "print",
    }
}

/// A record as scripts see it: its fields typed (money as exact decimals),
/// its tables as arrays of typed lines, with `id` and `version`.
fn typed(entity: &EntityModel, record: Record) -> Dynamic {
    let prepared = Prepared::of_values(entity, record.values);
    let mut map = record_map(entity, &prepared)
        .try_cast::<rhai::Map>()
        .unwrap_or_default();
    map.insert("id".into(), Dynamic::from(record.id));
    map.insert("version".into(), Dynamic::from(record.version));
    Dynamic::from_map(map)
}
