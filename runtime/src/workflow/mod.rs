//! Workflows at run time: which actions a user may take on a record, and taking
//! one — eligibility, guard, inputs, approvals, effects, the state change and
//! its history — in one transaction through the write pipeline.
//!
//! - [`approvers`]: who may act on a record now (roles, user fields, deputies,
//!   transfers, add-signs) and whether the approvals given so far suffice;
//! - [`effects`]: what an action does (set fields, create and update records,
//!   notify, publish);
//! - [`due`]: due times of states, reminders and escalations;
//! - [`delegation`]: deputies standing in for absent approvers, by dates;
//! - [`history`]: the decisions, one row each, which are also the state of the
//!   approval under way;
//! - [`run`]: [`Workflows`], the operations the API calls.

pub mod approvers;
pub mod delegation;
pub mod due;
pub mod effects;
pub mod history;
pub mod run;

use std::collections::HashMap;

use indexmap::IndexMap;
use serde_json::Value as Json;
use trellis_engine::CheckedModel;
use trellis_engine::model::{Action, Effect, State};
use trellis_engine::script::{CompiledScript, ScriptOrigin};

use crate::catalog::Catalog;
use crate::hooks::Script;

pub use run::{Decision, Outcome, Workflows};

/// An action of an entity (a transition, or a button that keeps the state),
/// with its guard compiled.
#[derive(Debug, Clone)]
pub struct ActionModel {
    pub def: Action,
    pub guard: Option<CompiledScript>,
}

impl ActionModel {
    /// Whether the action can start from `state`.
    pub fn starts_from(&self, state: Option<&str>, model: &WorkflowModel) -> bool {
        let Some(from) = &self.def.from else {
            // A button without `from` is available in every state but final ones.
            return !state.is_some_and(|s| model.is_final(s));
        };
        let names = from.names();
        match state {
            Some(s) if names.contains(&"*") => !model.is_final(s),
            Some(s) => names.contains(&s),
            None => false,
        }
    }
}

/// The workflow of one entity, ready to run.
#[derive(Debug, Clone)]
pub struct WorkflowModel {
    pub app: String,
    pub entity: String,
    /// The state field, when the entity has a state machine.
    pub field: Option<String>,
    pub states: IndexMap<String, State>,
    pub actions: Vec<ActionModel>,
    /// `=expression` values of effects, compiled, by their source text.
    expressions: HashMap<String, CompiledScript>,
    /// `run` effects, compiled, by their source text.
    hooks: HashMap<String, Script>,
}

impl WorkflowModel {
    pub fn action(&self, name: &str) -> Option<&ActionModel> {
        self.actions.iter().find(|a| a.def.action == name)
    }

    fn is_final(&self, state: &str) -> bool {
        self.states.get(state).is_some_and(|s| s.is_final)
    }

    /// A compiled `run` effect.
    pub fn hook(&self, source: &str) -> Option<&Script> {
        self.hooks.get(source)
    }

    /// A compiled `=expression` of an effect.
    pub fn expression(&self, source: &str) -> Option<&CompiledScript> {
        self.expressions.get(source)
    }
}

/// Compiles the workflows and entity actions of every app: one model per
/// entity that has either.
pub fn compile(
    model: &CheckedModel,
    catalog: &Catalog,
) -> HashMap<(String, String), WorkflowModel> {
    let sandbox = catalog.sandbox();
    let mut out = HashMap::new();
    for app in model.apps() {
        let app_name = app.name();
        for (name, item) in &app.entities {
            let workflow = app.workflows.values().find(|w| w.value.entity == *name);
            let buttons = &item.value.actions;
            if workflow.is_none() && buttons.is_empty() {
                continue;
            }
            let Some(entity) = catalog.entity(&app_name, name) else {
                continue;
            };
            let mut vars = entity.script_variables();
            vars.extend(["split", "parent"]);
            let mut extra: Vec<String> = Vec::new();
            for lines in entity.lines.values() {
                extra.extend(lines.fields.keys().cloned());
            }
            vars.extend(extra.iter().map(String::as_str));
            let compile = |source: &str| sandbox.compile(source, &vars).ok();
            let defs = workflow
                .map(|w| w.value.transitions.clone())
                .unwrap_or_default()
                .into_iter()
                .chain(buttons.iter().cloned());
            let mut expressions = HashMap::new();
            let mut actions = Vec::new();
            for def in defs {
                for effect in &def.effects {
                    collect_expressions(effect, &compile, &mut expressions);
                }
                let guard = def.guard.as_ref().and_then(|g| compile(&g.script));
                actions.push(ActionModel { def, guard });
            }
            let states = workflow.map(|w| w.value.states.clone()).unwrap_or_default();
            for state in states.values() {
                for effect in &state.on_enter {
                    collect_expressions(effect, &compile, &mut expressions);
                }
            }
            // `run` effects, each located at its place in its file.
            let mut places: Vec<(&trellis_engine::source::SourceFile, String, &[Effect])> =
                Vec::new();
            if let Some(w) = workflow {
                for (i, t) in w.value.transitions.iter().enumerate() {
                    places.push((&w.file, format!("/transitions/{i}/effects"), &t.effects));
                }
                for (name, state) in &w.value.states {
                    places.push((&w.file, format!("/states/{name}/on_enter"), &state.on_enter));
                }
            }
            for (i, b) in buttons.iter().enumerate() {
                places.push((&item.file, format!("/actions/{i}/effects"), &b.effects));
            }
            let mut hooks = HashMap::new();
            for (file, at, effects) in places {
                for (j, effect) in effects.iter().enumerate() {
                    let Effect::Run(source) = effect else {
                        continue;
                    };
                    let Ok(compiled) =
                        sandbox.compile(source, &trellis_engine::check::HOOK_VARIABLES)
                    else {
                        continue;
                    };
                    let path = file
                        .path
                        .strip_prefix(&app.dir)
                        .unwrap_or(&file.path)
                        .display()
                        .to_string();
                    let pointer = format!("{at}/{j}/run");
                    let origin = ScriptOrigin::inline(file, path, &pointer, source, 0);
                    let name = "`run` effect".to_owned();
                    hooks.insert(
                        source.clone(),
                        Script {
                            name,
                            origin,
                            compiled,
                        },
                    );
                }
            }
            out.insert(
                (app_name.clone(), name.clone()),
                WorkflowModel {
                    app: app_name.clone(),
                    entity: name.clone(),
                    field: workflow.map(|w| w.value.field.clone()),
                    states,
                    actions,
                    expressions,
                    hooks,
                },
            );
        }
    }
    out
}

/// Every `=expression` an effect holds, compiled once.
fn collect_expressions(
    effect: &Effect,
    compile: &dyn Fn(&str) -> Option<CompiledScript>,
    out: &mut HashMap<String, CompiledScript>,
) {
    let mut add = |value: &Json| {
        if let Some(source) = value.as_str().and_then(|s| s.strip_prefix('='))
            && let Some(script) = compile(source)
        {
            out.insert(source.to_owned(), script);
        }
    };
    match effect {
        Effect::Set(values) => values.values().for_each(&mut add),
        Effect::Create(create) => {
            create.fields.values().for_each(&mut add);
            for mapping in create.lines.values() {
                mapping.fields.values().for_each(&mut add);
            }
        }
        Effect::Update(update) => update.set.values().for_each(&mut add),
        Effect::CreateAccount(account) => {
            add(&account.username);
            add(&account.email);
            if let Some(name) = &account.display_name {
                add(name);
            }
            account.attributes.values().for_each(&mut add);
        }
        // `run` scripts are compiled as hooks; pushes by their connector.
        Effect::Notify(_) | Effect::Run(_) | Effect::Push(_) => {}
    }
}
