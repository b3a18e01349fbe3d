//! The workflow operations: the actions a user may take on a record, taking
//! one, and the built-in moves of an approval (withdraw, transfer, add-sign).
//! Each runs in one write transaction with the record locked, so of parallel
//! attempts on one record exactly one changes its state.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value as Json};
use trellis_engine::CheckedModel;
use trellis_engine::model::{Label, RuleEvent};

use super::approvers::{self, Me, Via};
use super::due;
use super::effects::Run;
use super::history::{self, Entry, Kind, NewEntry, Subject};
use super::{ActionModel, WorkflowModel};
use crate::catalog::{Catalog, EntityModel};
use crate::hooks::HookRun;
use crate::permission::Permissions;
use crate::read::{Access, RecordReader};
use crate::record::{FieldError, Record, RecordError};
use crate::write::RecordWriter;
use crate::write::columns::{column_errors, keep_columns};
use crate::write::prepare::{Prepared, condition_holds, evaluate, prepare};

/// What a person sends with an action.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    pub comment: Option<String>,
    /// Values of the action's `input` fields.
    pub values: Map<String, Json>,
    /// The version the person saw, if they send it: a newer record is a conflict.
    pub version: Option<i64>,
}

/// The result of an action.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// `false` when the approval was recorded but others must still decide.
    pub completed: bool,
    pub record: Record,
    /// The warnings of the action, in the order they were given: what its
    /// `run` effects and `transition` rules said with `warn`, then those of
    /// the record's save (validation rules of level `warning` that do not
    /// hold, its `update` hooks' `warn`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<FieldError>,
}

/// An action a user may take now.
#[derive(Debug, Clone, Serialize)]
pub struct Allowed {
    pub action: String,
    pub label: Option<Label>,
    pub to: Option<String>,
    pub input: Vec<String>,
    pub comment_required: bool,
    pub confirm: Option<Label>,
}

/// The workflows of a deployment.
#[derive(Clone)]
pub struct Workflows {
    models: Arc<HashMap<(String, String), WorkflowModel>>,
    catalog: Arc<Catalog>,
    writer: RecordWriter,
    reader: RecordReader,
    permissions: Arc<Permissions>,
}

impl Workflows {
    pub fn new(
        model: &CheckedModel,
        catalog: Arc<Catalog>,
        writer: RecordWriter,
        permissions: Arc<Permissions>,
    ) -> Self {
        Workflows {
            models: Arc::new(super::compile(model, &catalog)),
            reader: RecordReader::new(writer.store().clone(), catalog.clone()),
            catalog,
            writer,
            permissions,
        }
    }

    pub fn of(&self, entity: &EntityModel) -> Option<&WorkflowModel> {
        self.models.get(&(entity.app.clone(), entity.name.clone()))
    }

    /// The user as an approver today (their deputyships loaded).
    pub async fn me(
        &self,
        user: crate::permission::User,
        can_update: bool,
    ) -> Result<Me, RecordError> {
        let today = self.writer.store().clock().today();
        let deputising =
            approvers::deputising(self.writer.store().connection(), user.id, today).await?;
        Ok(Me {
            user,
            deputising,
            can_update,
        })
    }

    /// The actions `me` may take on `record` now (guards evaluated).
    pub async fn allowed(
        &self,
        entity: &EntityModel,
        record: &Record,
        me: &Me,
    ) -> Result<Vec<Allowed>, RecordError> {
        let Some(workflow) = self.of(entity) else {
            return Ok(Vec::new());
        };
        let store = self.writer.store();
        let entries = history::read(
            store.connection(),
            store.dialect(),
            subject(entity, record.id),
        )
        .await?;
        let round = history::current_round(&entries);
        let prepared = as_prepared(entity, record);
        let cx = self.writer.context(&me.user.actor, false);
        let state = state_of(workflow, &prepared);
        let mut out = Vec::new();
        for action in &workflow.actions {
            if !action.starts_from(state.as_deref(), workflow)
                || approvers::eligible(action, &prepared.values, round, me).is_err()
            {
                continue;
            }
            if let Some(guard) = &action.guard
                && !evaluate(entity, &prepared, &cx, guard, &[])
                    .is_ok_and(|v| v == Json::Bool(true))
            {
                continue;
            }
            out.push(Allowed {
                action: action.def.action.clone(),
                label: action.def.label.clone(),
                to: action.def.to.clone(),
                input: action.def.input.clone(),
                comment_required: action.def.comment_required,
                confirm: action.def.confirm.clone(),
            });
        }
        Ok(out)
    }

    /// A record's workflow history, oldest first. The caller has checked that
    /// the user may read the record.
    pub async fn history(&self, entity: &EntityModel, id: i64) -> Result<Vec<Entry>, RecordError> {
        let store = self.writer.store();
        history::read(store.connection(), store.dialect(), subject(entity, id)).await
    }

    /// Takes an action on a record: in one transaction, the record locked.
    pub async fn act(
        &self,
        entity: &EntityModel,
        id: i64,
        name: &str,
        mut decision: Decision,
        me: &Me,
        access: &Access,
    ) -> Result<Outcome, RecordError> {
        let workflow = self.of(entity).ok_or_else(|| no_action(entity, name))?;
        let action = workflow
            .action(name)
            .ok_or_else(|| no_action(entity, name))?;
        let store = self.writer.store();
        let dialect = store.dialect();
        let txn = store.begin_write().await?;
        let (current, base) = self.writer.lock(&txn, entity, id, access).await?;
        if let Some(expected) = decision.version.filter(|v| *v != current.version) {
            return Err(RecordError::Conflict {
                entity: entity.name.clone(),
                id,
                expected,
                found: current.version,
            });
        }
        let state = state_of(workflow, &base);
        if !action.starts_from(state.as_deref(), workflow) {
            return Err(RecordError::WrongState {
                entity: entity.name.clone(),
                id,
                action: name.to_owned(),
                state: state.unwrap_or_default(),
            });
        }
        let entries = history::read(&txn, dialect, subject(entity, id)).await?;
        let round = history::current_round(&entries);
        let via =
            approvers::eligible(action, &base.values, round, me).map_err(RecordError::Refused)?;
        let comment = decision
            .comment
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty());
        if action.def.comment_required && comment.is_none() {
            return Err(invalid(
                "comment",
                "required",
                "this action needs a comment",
            ));
        }
        refuse_inputs(entity, action, &decision.values, &base, access)?;
        // Input lines that leave out columns the user may not see or change keep them.
        if let Some(kept) = keep_columns(entity, &base, &decision.values, access) {
            decision.values = kept;
        }
        let via_text = via.text();
        let entry = |kind, to_state| NewEntry {
            kind,
            action: Some(name),
            from_state: state.as_deref(),
            to_state,
            user_id: Some(me.user.id),
            via: Some(&via_text),
            target_user: None,
            comment,
        };
        if let Via::AddedSigner(_) = via {
            history::write(
                &txn,
                dialect,
                subject(entity, id),
                entry(Kind::Signoff, None),
                store.clock().now(),
            )
            .await?;
            txn.commit().await?;
            return self.outcome(entity, id, false, access).await;
        }
        let members = match action.def.approval {
            Some(trellis_engine::model::Approval::All) => {
                approvers::members(&txn, &action.def.roles).await?
            }
            _ => Vec::new(),
        };
        if !approvers::completes(action, &base.values, round, me.user.id, &via_text, &members) {
            history::write(
                &txn,
                dialect,
                subject(entity, id),
                entry(Kind::Approval, None),
                store.clock().now(),
            )
            .await?;
            txn.commit().await?;
            return self.outcome(entity, id, false, access).await;
        }

        // The inputs, coerced and checked by the pipeline, are what guards and effects see.
        let cx = self.writer.context(&me.user.actor, true);
        let staged =
            prepare(entity, &base, &decision.values, false, &cx).map_err(RecordError::Invalid)?;
        if let Some(guard) = &action.guard {
            match evaluate(entity, &staged, &cx, guard, &[]) {
                Ok(Json::Bool(true)) => {}
                Ok(_) => {
                    let message = action
                        .def
                        .guard
                        .as_ref()
                        .map(|g| g.message.text("en").to_owned())
                        .unwrap_or_default();
                    return Err(invalid("", "guard", message));
                }
                // A broken guard is the model's fault, not a refusal to report.
                Err(failure) => {
                    return Err(invalid(
                        "",
                        "script",
                        format!("the guard of `{name}`: {failure}"),
                    ));
                }
            }
        }
        missing(&staged, &action.def.require, "this action")?;
        // Hooks read and write other records under the user's permissions, through
        // the pipeline; as model logic they may set fields the model makes
        // read-only for people (a balance's `used`).
        let user_cx = self.writer.context(&me.user.actor, true);
        let access_for = |e: &EntityModel, op| self.permissions.access(&me.user, e, op);
        let hooks = HookRun {
            txn: &txn,
            writer: &self.writer,
            reader: &self.reader,
            catalog: &self.catalog,
            app: &entity.app,
            cx: &user_cx,
            access: &access_for,
        };
        let mut run = Run {
            writer: &self.writer,
            catalog: &self.catalog,
            workflow,
            entity,
            txn: &txn,
            cx: &cx,
            record: &staged,
            patch: decision.values.clone(),
            notices: Vec::new(),
            warnings: Vec::new(),
            hooks: &hooks,
            action: name,
            comment,
        };
        run.apply(&action.def.effects).await?;
        for rule in entity.hooks.iter().filter(|h| {
            h.on == RuleEvent::Transition
                && (h.actions.is_empty() || h.actions.iter().any(|a| a == name))
                && h.when
                    .as_ref()
                    .is_none_or(|w| condition_holds(entity, w, &staged.values, &cx))
        }) {
            run.hook(&rule.script).await?;
        }
        let target = action.def.to.as_deref();
        if let (Some(field), Some(to)) = (&workflow.field, target) {
            run.patch.insert(field.clone(), Json::String(to.to_owned()));
            if let Some(entered) = workflow.states.get(to) {
                run.apply(&entered.on_enter).await?;
            }
        }
        let (patch, notices, ran_warnings) = (run.patch, run.notices, run.warnings);
        let (written, warnings) = self
            .writer
            .update_in(
                &txn,
                entity,
                id,
                current.version,
                &base,
                &patch,
                &Access::everything().for_user(&me.user.actor),
                &cx,
            )
            .await?;
        if let Some(entered) = target.and_then(|to| workflow.states.get(to)) {
            let state_name = target.unwrap_or_default();
            missing(&written, &entered.require, &format!("state `{state_name}`"))?;
        }
        history::write(
            &txn,
            dialect,
            subject(entity, id),
            entry(Kind::Transition, target.or(state.as_deref())),
            cx.now,
        )
        .await?;
        if let Some(to) = target.filter(|to| Some(*to) != state.as_deref()) {
            let entered = workflow.states.get(to);
            due::enter(
                &txn,
                dialect,
                subject(entity, id),
                to,
                entered,
                &written.values,
                cx.now,
            )
            .await?;
        }
        let sent = super::effects::Sent {
            entity,
            id,
            record: &written,
            action: name,
            from: state.as_deref(),
            to: target,
            user: me.user.id,
        };
        super::effects::send(&txn, dialect, sent, &notices).await?;
        txn.commit().await?;
        let mut done = self.outcome(entity, id, true, access).await?;
        done.warnings = [ran_warnings, warnings].concat();
        Ok(done)
    }

    /// The submitter takes the record back to the state it came from, while
    /// nobody has decided on it yet.
    pub async fn withdraw(
        &self,
        entity: &EntityModel,
        id: i64,
        comment: Option<&str>,
        me: &Me,
        access: &Access,
    ) -> Result<Outcome, RecordError> {
        let workflow = self
            .of(entity)
            .ok_or_else(|| no_action(entity, "withdraw"))?;
        let field = workflow
            .field
            .clone()
            .ok_or_else(|| no_action(entity, "withdraw"))?;
        let store = self.writer.store();
        let dialect = store.dialect();
        let txn = store.begin_write().await?;
        let (current, base) = self.writer.lock(&txn, entity, id, access).await?;
        let entries = history::read(&txn, dialect, subject(entity, id)).await?;
        let state = state_of(workflow, &base);
        let last = entries.iter().rev().find(|e| e.kind.ends_round());
        let submitted = last.filter(|e| {
            e.kind == Kind::Transition && e.user_id == Some(me.user.id) && e.to_state == state
        });
        let Some(back) = submitted.and_then(|e| e.from_state.clone()) else {
            return Err(RecordError::Refused(
                "only the person who moved the record into its state may withdraw it".into(),
            ));
        };
        if !history::current_round(&entries).is_empty() {
            return Err(RecordError::Refused(
                "someone has already decided on this record; it can no longer be withdrawn".into(),
            ));
        }
        let cx = self.writer.context(&me.user.actor, true);
        let mut patch = Map::new();
        patch.insert(field, Json::String(back.clone()));
        let (_, warnings) = self
            .writer
            .update_in(
                &txn,
                entity,
                id,
                current.version,
                &base,
                &patch,
                &Access::everything().for_user(&me.user.actor),
                &cx,
            )
            .await?;
        let back_state = workflow.states.get(&back);
        due::enter(
            &txn,
            dialect,
            subject(entity, id),
            &back,
            back_state,
            &base.values,
            cx.now,
        )
        .await?;
        let entry = NewEntry {
            kind: Kind::Withdraw,
            action: None,
            from_state: state.as_deref(),
            to_state: Some(&back),
            user_id: Some(me.user.id),
            via: Some("submitter"),
            target_user: None,
            comment,
        };
        history::write(&txn, dialect, subject(entity, id), entry, cx.now).await?;
        txn.commit().await?;
        let mut done = self.outcome(entity, id, true, access).await?;
        done.warnings = warnings;
        Ok(done)
    }

    /// An approver hands their turn to another user (`Kind::Transfer`), or asks
    /// another user to sign before the approvers continue (`Kind::AddSign`).
    #[allow(clippy::too_many_arguments)]
    pub async fn hand_over(
        &self,
        entity: &EntityModel,
        id: i64,
        kind: Kind,
        to: i64,
        comment: Option<&str>,
        me: &Me,
        access: &Access,
    ) -> Result<Outcome, RecordError> {
        let workflow = self
            .of(entity)
            .ok_or_else(|| no_action(entity, kind.as_str()))?;
        let store = self.writer.store();
        let dialect = store.dialect();
        let txn = store.begin_write().await?;
        let (_, base) = self.writer.lock(&txn, entity, id, access).await?;
        let entries = history::read(&txn, dialect, subject(entity, id)).await?;
        let round = history::current_round(&entries);
        let state = state_of(workflow, &base);
        let approver = workflow
            .actions
            .iter()
            .filter(|a| a.def.to.is_some())
            .find_map(|a| {
                (a.starts_from(state.as_deref(), workflow))
                    .then(|| approvers::eligible(a, &base.values, round, me).ok())
                    .flatten()
            });
        let Some(Via::Approver(via)) = approver else {
            return Err(RecordError::Refused(format!(
                "only an approver of this record may {}",
                if kind == Kind::Transfer {
                    "transfer it"
                } else {
                    "add a signer"
                }
            )));
        };
        if to == me.user.id || !crate::account::exists(&txn, to).await? {
            return Err(invalid("to", "user", "name another, existing user"));
        }
        let entry = NewEntry {
            kind,
            action: None,
            from_state: state.as_deref(),
            to_state: state.as_deref(),
            user_id: Some(me.user.id),
            via: Some(&via),
            target_user: Some(to),
            comment,
        };
        let at = store.clock().now();
        history::write(&txn, dialect, subject(entity, id), entry, at).await?;
        txn.commit().await?;
        self.outcome(entity, id, false, access).await
    }

    /// The record after a move, as the user sees it (their hidden fields and
    /// line columns left out).
    async fn outcome(
        &self,
        entity: &EntityModel,
        id: i64,
        completed: bool,
        access: &Access,
    ) -> Result<Outcome, RecordError> {
        let store = self.writer.store();
        let (mut record, _) = crate::read::load::load(
            store.connection(),
            store.dialect(),
            entity,
            id,
            false,
            sea_orm::sea_query::Condition::all(),
        )
        .await?
        .ok_or(RecordError::NotFound {
            entity: entity.name.clone(),
            id,
        })?;
        access.redact(&mut record);
        Ok(Outcome {
            completed,
            record,
            warnings: Vec::new(),
        })
    }

    /// Records of `entity` that may be waiting for `me`: in a state one of
    /// whose actions names the user's roles, one of their deputies' roles or a
    /// user field, or handed to them. The caller filters them by
    /// [`allowed`](Self::allowed) under its read access.
    pub fn task_filter(&self, entity: &EntityModel, me: &Me) -> Option<(Vec<String>, Vec<String>)> {
        let workflow = self.of(entity)?;
        workflow.field.as_ref()?;
        let mut by_role = Vec::new();
        let mut user_fields = Vec::new();
        let mut roles: Vec<&String> = me.user.roles.iter().collect();
        for (_, theirs) in &me.deputising {
            roles.extend(theirs);
        }
        for action in workflow.actions.iter().filter(|a| a.def.to.is_some()) {
            let states: Vec<String> = match &action.def.from {
                Some(from) if from.names().contains(&"*") => workflow
                    .states
                    .iter()
                    .filter(|(_, s)| !s.is_final)
                    .map(|(n, _)| n.clone())
                    .collect(),
                Some(from) => from.names().into_iter().map(str::to_owned).collect(),
                None => Vec::new(),
            };
            if action.def.roles.iter().any(|r| roles.contains(&r)) {
                by_role.extend(states);
            } else if !action.def.users.is_empty() {
                user_fields.extend(action.def.users.iter().cloned());
            }
        }
        by_role.sort();
        by_role.dedup();
        user_fields.sort();
        user_fields.dedup();
        Some((by_role, user_fields))
    }
}

fn subject(entity: &EntityModel, id: i64) -> Subject<'_> {
    Subject {
        app: &entity.app,
        entity: &entity.name,
        id,
    }
}

fn state_of(workflow: &WorkflowModel, record: &Prepared) -> Option<String> {
    let field = workflow.field.as_ref()?;
    record.values.get(field)?.as_str().map(str::to_owned)
}

fn as_prepared(entity: &EntityModel, record: &Record) -> Prepared {
    let mut prepared = Prepared {
        values: record.values.clone(),
        lines: Default::default(),
    };
    for name in entity.lines.keys() {
        if let Some(Json::Array(rows)) = prepared.values.remove(name) {
            let rows = rows
                .into_iter()
                .filter_map(|r| r.as_object().cloned())
                .collect();
            prepared.lines.insert(name.clone(), rows);
        }
    }
    prepared
}

fn no_action(entity: &EntityModel, name: &str) -> RecordError {
    RecordError::Refused(format!("{} has no action `{name}`", entity.name))
}

fn invalid(field: &str, code: &str, message: impl Into<String>) -> RecordError {
    RecordError::Invalid(vec![FieldError::new(field, code, message)])
}

/// Inputs must be declared by the action, and visible and writable to the
/// user, and so must the columns their lines name (a read-only column may
/// keep its stored value).
fn refuse_inputs(
    entity: &EntityModel,
    action: &ActionModel,
    values: &Map<String, Json>,
    base: &Prepared,
    access: &Access,
) -> Result<(), RecordError> {
    let mut errors: Vec<FieldError> = values
        .keys()
        .filter_map(|name| {
            if access.hides(name) {
                Some(FieldError::new(name, "unknown_field", "no such field"))
            } else if !action.def.input.contains(name) || access.is_read_only(name) {
                Some(FieldError::new(
                    name,
                    "not_an_input",
                    format!("`{}` does not take this field", action.def.action),
                ))
            } else {
                None
            }
        })
        .collect();
    errors.extend(column_errors(entity, values, Some(base), access));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(RecordError::Invalid(errors))
    }
}

/// Every field of `names` that holds no value (a table field: no lines), as errors.
fn missing(record: &Prepared, names: &[String], needed_by: &str) -> Result<(), RecordError> {
    let empty = |name: &str| match (record.values.get(name), record.lines.get(name)) {
        (_, Some(lines)) => lines.is_empty(),
        (None | Some(Json::Null), None) => true,
        (Some(Json::String(s)), None) => s.trim().is_empty(),
        _ => false,
    };
    let errors: Vec<FieldError> = names
        .iter()
        .filter(|name| empty(name))
        .map(|name| FieldError::new(name, "required", format!("needed by {needed_by}")))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(RecordError::Invalid(errors))
    }
}
