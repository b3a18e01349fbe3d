//! The entity hooks of the write pipeline: `create` and `update` rules run
//! after the record is written, `delete` rules before it goes, all in the
//! write's transaction with the record API under the writer's permissions.
//! What a `create` or `update` hook assigns to `record` is written back at
//! once (as the model's change, which runs no hooks again).

use sea_orm::DatabaseTransaction;
use serde_json::{Map, Value as Json};
use trellis_engine::model::{Operation, RuleEvent};

use super::RecordWriter;
use super::prepare::{Context, Prepared, condition_holds, record_map};
use crate::catalog::EntityModel;
use crate::hooks::{HookRun, Vars, api::map_of};
use crate::permission::User;
use crate::read::{Access, RecordReader};
use crate::record::{FieldError, RecordError};

/// A boxed future of the pipeline that hooks may re-enter.
pub(super) type Nested<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, RecordError>> + Send + 'a>>;

/// How deep hooks may set off each other (a hook's write runs the hooks of
/// the record it writes): enough for a follow-up that updates a parent that
/// updates its account, not for a loop.
const MAX_DEPTH: u8 = 4;

impl RecordWriter {
    /// Runs the `event` hooks of a record just written; writes back what they
    /// changed in `record`. Returns the record's warnings: `warned` (those of
    /// its validation rules), or, when a hook changed the record, its rules'
    /// warnings about it as changed; then those of the hooks.
    ///
    /// Boxed: a hook's writes run hooks in turn, so these futures nest.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn after_write<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        entity: &'a EntityModel,
        event: RuleEvent,
        id: i64,
        record: &'a Prepared,
        old: Option<&'a Prepared>,
        warned: Vec<FieldError>,
        cx: &'a Context<'a>,
    ) -> Nested<'a, Vec<FieldError>> {
        Box::pin(async move {
            let (changed, hooks_warned) =
                self.run_hooks(txn, entity, event, record, old, cx).await?;
            if changed.is_empty() {
                return Ok([warned, hooks_warned].concat());
            }
            let everything = Access::everything().for_user(cx.actor);
            let (current, base) = self.lock(txn, entity, id, &everything).await?;
            let quiet = Context {
                trusted: true,
                hook_depth: None,
                ..*cx
            };
            let (_, rules_warned) = self
                .update_in(
                    txn,
                    entity,
                    id,
                    current.version,
                    &base,
                    &changed,
                    &everything,
                    &quiet,
                )
                .await?;
            Ok([rules_warned, hooks_warned].concat())
        })
    }

    /// Runs the `delete` hooks of a record about to be deleted; a hook that
    /// throws refuses the delete.
    pub(super) fn before_delete<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        entity: &'a EntityModel,
        record: &'a Prepared,
        cx: &'a Context<'a>,
    ) -> Nested<'a, ()> {
        Box::pin(async move {
            self.run_hooks(txn, entity, RuleEvent::Delete, record, None, cx)
                .await
                .map(|_| ())
        })
    }

    /// Runs the hooks of `event` whose `when` holds, in order, each seeing the
    /// record as the previous left it. Returns the fields they changed and
    /// the warnings they gave.
    async fn run_hooks(
        &self,
        txn: &DatabaseTransaction,
        entity: &EntityModel,
        event: RuleEvent,
        record: &Prepared,
        old: Option<&Prepared>,
        cx: &Context<'_>,
    ) -> Result<(Map<String, Json>, Vec<FieldError>), RecordError> {
        let Some(depth) = cx.hook_depth else {
            return Ok((Map::new(), Vec::new()));
        };
        let hooks: Vec<_> = entity
            .hooks
            .iter()
            .filter(|h| h.on == event)
            .filter(|h| {
                h.when
                    .as_ref()
                    .is_none_or(|w| condition_holds(entity, w, &record.values, cx))
            })
            .collect();
        if hooks.is_empty() {
            return Ok((Map::new(), Vec::new()));
        }
        if depth >= MAX_DEPTH {
            return Err(RecordError::Invalid(vec![FieldError::new(
                "",
                "hook_depth",
                format!("hooks set off each other more than {MAX_DEPTH} levels deep"),
            )]));
        }
        let nested = Context {
            trusted: true,
            hook_depth: Some(depth + 1),
            ..*cx
        };
        let access_for = |target: &EntityModel, op: Operation| self.hook_access(cx, target, op);
        let reader = RecordReader::new(self.store.clone(), self.catalog.clone());
        let run = HookRun {
            txn,
            writer: self,
            reader: &reader,
            catalog: &self.catalog,
            app: &entity.app,
            cx: &nested,
            access: &access_for,
        };
        let mut current = record.clone();
        let mut changed = Map::new();
        let mut warnings = Vec::new();
        for hook in hooks {
            let record = record_map(entity, &current);
            // Compared in the form changes come back in (`2` for a stored `2.0`).
            let before = map_of(record.clone().try_cast().unwrap_or_default());
            let vars = Vars {
                record: Some(record),
                old: old.map(|o| record_map(entity, o)),
                ..Vars::default()
            };
            let ran = run.run(&hook.script, vars).await?;
            warnings.extend(ran.warnings);
            let Some(after) = ran.record else {
                continue;
            };
            for (field, value) in hook_changes(entity, &before, after) {
                match &value {
                    Json::Array(rows) if entity.lines.contains_key(&field) => {
                        let rows = rows.iter().filter_map(|r| r.as_object().cloned());
                        current.lines.insert(field.clone(), rows.collect());
                    }
                    _ => {
                        current.values.insert(field.clone(), value.clone());
                    }
                }
                changed.insert(field, value);
            }
        }
        Ok((changed, warnings))
    }

    /// What a hook's record API may do: the platform's writes may do
    /// everything; a user's, what their roles allow.
    fn hook_access(&self, cx: &Context<'_>, target: &EntityModel, op: Operation) -> Option<Access> {
        let Some(id) = cx.actor.user_id else {
            return Some(Access::everything());
        };
        let user = User {
            id,
            username: String::new(),
            roles: cx.actor.roles.clone(),
            actor: cx.actor.clone(),
        };
        self.permissions.as_ref()?.access(&user, target, op)
    }
}

/// What a hook changed in `record` (`before` is the same record in the form
/// changes come back in), as a patch the write pipeline takes: fields of the
/// record but its state (only actions move it), and whole tables. Lines keep
/// their `id`, so that stored lines are updated, not replaced; their computed
/// columns and `position` are left out, as the pipeline sets them.
pub(crate) fn hook_changes(
    entity: &EntityModel,
    before: &Map<String, Json>,
    after: Map<String, Json>,
) -> Map<String, Json> {
    let mut changed = Map::new();
    for (field, value) in after {
        if before.get(&field).unwrap_or(&Json::Null) == &value {
            continue;
        }
        if let Some(lines) = entity.lines.get(&field) {
            let value = match value {
                Json::Array(rows) => Json::Array(
                    rows.into_iter()
                        .map(|row| match row {
                            Json::Object(mut row) => {
                                row.retain(|k, _| {
                                    k != "position"
                                        && lines
                                            .fields
                                            .get(k)
                                            .is_none_or(|f| f.def.computed.is_none())
                                });
                                Json::Object(row)
                            }
                            other => other,
                        })
                        .collect(),
                ),
                other => other,
            };
            changed.insert(field, value);
        } else if entity.fields.contains_key(&field)
            && entity.state_field.as_deref() != Some(field.as_str())
        {
            changed.insert(field, value);
        }
    }
    changed
}
