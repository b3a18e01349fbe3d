//! Checks of a workflow: states, transitions and their soundness as a graph,
//! and of actions and effects (shared with entity actions).

use std::collections::HashSet;

use super::info::EntityInfo;
use super::{Ctx, HOOK_VARIABLES};
use crate::diagnostic::Code;
use crate::filter::a_field;
use crate::graph::{Soundness, WorkflowGraph};
use crate::load::{Item, valid_name};
use crate::model::{Action, Effect, FieldType, Workflow};
use crate::source::{SourceFile, pointer};

pub(super) fn check_workflow(ctx: &mut Ctx, item: &Item<Workflow>) {
    let file = &*item.file;
    let w = &item.value;
    let entity = ctx.entity(file, "/entity", &w.entity);
    if let Some(entity) = entity {
        let others: Vec<&String> = ctx
            .app
            .workflows
            .iter()
            .filter(|(n, o)| **n != item.name && o.value.entity == w.entity)
            .map(|(n, _)| n)
            .collect();
        if let Some(other) = others.first().filter(|o| o.as_str() < item.name.as_str()) {
            ctx.push(
                file.error(
                    Code::WorkflowConflict,
                    "/entity",
                    format!("`{}` already has a workflow (`{other}`)", w.entity),
                )
                .with_help("an entity has at most one workflow"),
            );
        }
        if entity.app != ctx.app_name {
            ctx.push(file.error(
                Code::WorkflowConflict,
                "/entity",
                "a workflow belongs to an entity of its own app",
            ));
        }
        let declared = ctx
            .app
            .entities
            .get(&entity.name)
            .is_some_and(|e| e.value.fields.contains_key(&w.field));
        if declared {
            ctx.push(
                file.error(
                    Code::WorkflowConflict,
                    "/field",
                    format!(
                        "`{}` is declared in entity `{}`; the workflow owns its state field",
                        w.field, w.entity
                    ),
                )
                .with_help(format!(
                    "remove `{}` from entities/{}.yaml",
                    w.field, w.entity
                )),
            );
        }
    }
    if !valid_name(&w.field) {
        ctx.push(file.error(
            Code::InvalidName,
            "/field",
            format!("`{}` is not a valid field name", w.field),
        ));
    }
    for name in w.states.keys() {
        if !valid_name(name) {
            ctx.push(file.key_error(
                Code::InvalidName,
                &pointer(["states", name]),
                format!("`{name}` is not a valid state name"),
            ));
        }
    }
    let initial: Vec<&String> = w
        .states
        .iter()
        .filter(|(_, s)| s.is_initial)
        .map(|(n, _)| n)
        .collect();
    match initial.as_slice() {
        [_] => {}
        [] => ctx.push(
            file.key_error(Code::InitialState, "/states", "no initial state")
                .with_help("mark the state new records start in with `initial: true`"),
        ),
        [_, rest @ ..] => {
            for name in rest {
                ctx.push(
                    file.key_error(
                        Code::InitialState,
                        &pointer(["states", name, "initial"]),
                        format!("a second initial state `{name}`"),
                    )
                    .with_help("a workflow has exactly one initial state"),
                );
            }
        }
    }
    let state_names: Vec<&str> = w.states.keys().map(String::as_str).collect();
    let state_ref = |ctx: &mut Ctx, at: &str, name: &str| -> bool {
        let ok = w.states.contains_key(name);
        if !ok {
            ctx.push(
                file.error(Code::UnknownState, at, format!("unknown state `{name}`"))
                    .with_label("not a state of this workflow")
                    .suggest(name, state_names.iter().copied()),
            );
        }
        ok
    };
    let mut actions = HashSet::new();
    // A misspelt state makes the graph wrong; report the name, not its consequences.
    let mut dangling = false;
    for (i, t) in w.transitions.iter().enumerate() {
        let at = format!("/transitions/{i}");
        match &t.from {
            None => ctx.push(
                file.key_error(Code::MissingKey, &at, "a transition needs `from`")
                    .with_help("`from: draft`, `from: [draft, rejected]` or `from: \"*\"`"),
            ),
            Some(from) => {
                for (j, name) in from.names().into_iter().enumerate() {
                    let fat = if matches!(from, crate::model::OneOrMany::One(_)) {
                        format!("{at}/from")
                    } else {
                        format!("{at}/from/{j}")
                    };
                    let known = name == "*" || state_ref(ctx, &fat, name);
                    dangling |= !known;
                    if known && name != "*" && w.states[name].is_final {
                        ctx.push(file.error(
                            Code::LeavesFinalState,
                            &fat,
                            format!("`{}` leaves the final state `{name}`", t.action),
                        ));
                    }
                }
            }
        }
        match &t.to {
            None => ctx.push(file.key_error(Code::MissingKey, &at, "a transition needs `to`")),
            Some(to) => dangling |= !state_ref(ctx, &format!("{at}/to"), to),
        }
        for from in t.from.iter().flat_map(|f| f.names()) {
            let starts: Vec<&str> = if from == "*" {
                w.states
                    .iter()
                    .filter(|(_, s)| !s.is_final)
                    .map(|(n, _)| n.as_str())
                    .collect()
            } else {
                vec![from]
            };
            for start in starts {
                if !actions.insert((start, t.action.as_str())) {
                    ctx.push(
                        file.error(
                            Code::DuplicateName,
                            &format!("{at}/action"),
                            format!("a second action `{}` out of state `{start}`", t.action),
                        )
                        .with_help("in one state, an action name leads to one place"),
                    );
                }
            }
        }
        if let Some(entity) = entity {
            check_action(ctx, file, &at, t, entity);
        }
    }
    for (name, state) in &w.states {
        let at = pointer(["states", name]);
        if let Some(entity) = entity {
            ctx.fields(
                file,
                &format!("{at}/require"),
                &entity.fields,
                &state.require,
                &w.entity,
            );
            effects(
                ctx,
                file,
                &format!("{at}/on_enter"),
                &state.on_enter,
                entity,
            );
            if let Some(due) = &state.due {
                ctx.duration(file, &format!("{at}/due/after"), &due.after);
                if let Some(before) = &due.remind_before {
                    ctx.duration(file, &format!("{at}/due/remind_before"), before);
                }
                if let Some(from) = &due.from
                    && let Some(f) = ctx.field(
                        file,
                        &format!("{at}/due/from"),
                        &entity.fields,
                        from,
                        &w.entity,
                    )
                    && !f.is_temporal()
                {
                    ctx.push(file.error(
                        Code::WrongFieldType,
                        &format!("{at}/due/from"),
                        format!("`{from}` is {}, not a date or datetime", a_field(f.kind)),
                    ));
                }
                ctx.recipients(
                    file,
                    &format!("{at}/due/escalate_to"),
                    &due.escalate_to,
                    &entity.fields,
                    &w.entity,
                );
            }
        }
    }
    if initial.len() == 1 && !dangling {
        let graph = WorkflowGraph::new(w);
        let Soundness {
            unreachable,
            dead_ends,
            traps,
            no_final,
        } = graph.soundness();
        for name in unreachable {
            ctx.push(
                file.key_error(
                    Code::UnreachableState,
                    &pointer(["states", &name]),
                    format!(
                        "state `{name}` cannot be reached from the initial state `{}`",
                        initial[0]
                    ),
                )
                .with_help("add a transition into it, or remove it"),
            );
        }
        if no_final {
            ctx.push(
                file.key_error(Code::DeadEnd, "/states", "no final state")
                    .with_help("mark where records end with `final: true`"),
            );
        }
        for name in dead_ends {
            ctx.push(
                file.key_error(
                    Code::DeadEnd,
                    &pointer(["states", &name]),
                    format!(
                        "state `{name}` is a dead end: no transition leaves it and it is not final"
                    ),
                )
                .with_help("add a transition out of it, or mark it `final: true`"),
            );
        }
        for name in traps {
            ctx.push(
                file.key_error(
                    Code::DeadEnd,
                    &pointer(["states", &name]),
                    format!("no final state can be reached from `{name}`"),
                )
                .with_help("records entering it could never finish; add a way out"),
            );
        }
    }
}

/// Checks an action (a transition or an entity button) over `entity`.
pub(super) fn check_action(
    ctx: &mut Ctx,
    file: &SourceFile,
    at: &str,
    action: &Action,
    entity: &EntityInfo,
) {
    if !valid_name(&action.action) {
        ctx.push(file.error(
            Code::InvalidName,
            &format!("{at}/action"),
            format!("`{}` is not a valid action name", action.action),
        ));
    }
    let fields = &entity.fields;
    ctx.roles(file, &format!("{at}/roles"), &action.roles);
    for (i, name) in action.users.iter().enumerate() {
        let uat = format!("{at}/users/{i}");
        if let Some(f) = ctx.field(file, &uat, fields, name, &entity.name)
            && f.kind != FieldType::User
        {
            ctx.push(file.error(
                Code::WrongFieldType,
                &uat,
                format!("`{name}` is {}; `users` names user fields", a_field(f.kind)),
            ));
        }
    }
    if action.roles.is_empty() && action.users.is_empty() && action.approval.is_some() {
        ctx.push(file.key_error(
            Code::MissingKey,
            &format!("{at}/approval"),
            "an approval needs approvers: `roles` or `users`",
        ));
    }
    if let Some(guard) = &action.guard {
        let vars = Ctx::record_variables(fields);
        ctx.inline_script(file, &format!("{at}/guard/script"), &guard.script, 0, &vars);
    }
    ctx.fields(
        file,
        &format!("{at}/require"),
        fields,
        &action.require,
        &entity.name,
    );
    ctx.fields(
        file,
        &format!("{at}/input"),
        fields,
        &action.input,
        &entity.name,
    );
    effects(ctx, file, &format!("{at}/effects"), &action.effects, entity);
}

/// Checks effects run on records of `entity`.
fn effects(ctx: &mut Ctx, file: &SourceFile, at: &str, effects: &[Effect], entity: &EntityInfo) {
    let vars = Ctx::record_variables(&entity.fields);
    for (i, effect) in effects.iter().enumerate() {
        let eat = format!("{at}/{i}");
        match effect {
            Effect::Set(values) => {
                for (name, value) in values {
                    let vat = format!("{eat}/set/{}", crate::source::escape(name));
                    if entity.state_field.as_deref() == Some(name) {
                        ctx.push(file.key_error(
                            Code::WorkflowConflict,
                            &vat,
                            format!("`{name}` is the state field; only transitions change it"),
                        ));
                        continue;
                    }
                    if let Some(f) = ctx.field(file, &vat, &entity.fields, name, &entity.name) {
                        let f = f.clone();
                        ctx.value(file, &vat, value, &f, name, &vars);
                    }
                }
            }
            Effect::Create(create) => {
                let cat = format!("{eat}/create");
                let Some(target) = ctx.entity(file, &format!("{cat}/entity"), &create.entity)
                else {
                    continue;
                };
                // A split record's fields may use the value it was split by.
                let mut field_vars = vars.clone();
                if create.split_by.is_some() {
                    field_vars.push("split");
                }
                for (name, value) in &create.fields {
                    let fat = format!("{cat}/fields/{}", crate::source::escape(name));
                    if let Some(f) = ctx.field(file, &fat, &target.fields, name, &target.name) {
                        let f = f.clone();
                        ctx.value(file, &fat, value, &f, name, &field_vars);
                    }
                }
                for (name, mapping) in &create.lines {
                    let lat = format!("{cat}/lines/{}", crate::source::escape(name));
                    let target_table = ctx
                        .field(file, &lat, &target.fields, name, &target.name)
                        .cloned();
                    let source_table = ctx
                        .field(
                            file,
                            &format!("{lat}/from"),
                            &entity.fields,
                            &mapping.from,
                            &entity.name,
                        )
                        .cloned();
                    for (what, table, owner) in [
                        ("target", &target_table, &target.name),
                        ("source", &source_table, &entity.name),
                    ] {
                        if let Some(t) = table
                            && t.kind != FieldType::Table
                        {
                            let p = if what == "target" {
                                lat.clone()
                            } else {
                                format!("{lat}/from")
                            };
                            ctx.push(file.error(Code::WrongFieldType, &p, format!("the {what} of a line mapping must be a table field of `{owner}`")));
                        }
                    }
                    let (Some(tt), Some(st)) = (target_table, source_table) else {
                        continue;
                    };
                    let line_vars: Vec<&str> = st
                        .children
                        .keys()
                        .map(String::as_str)
                        .chain(["parent", "user", "today", "now"])
                        .collect();
                    for (child, value) in &mapping.fields {
                        let fat = format!("{lat}/fields/{}", crate::source::escape(child));
                        if let Some(f) = ctx.field(
                            file,
                            &fat,
                            &tt.children,
                            child,
                            &format!("{}.{name}", target.name),
                        ) {
                            let f = f.clone();
                            ctx.value(file, &fat, value, &f, child, &line_vars);
                        }
                    }
                    if let Some(when) = &mapping.when {
                        ctx.filter(file, &format!("{lat}/when"), when, &st.children);
                    }
                }
                if let Some(split) = &create.split_by {
                    let tables: Vec<_> = create
                        .lines
                        .values()
                        .filter_map(|m| entity.fields.get(&m.from))
                        .collect();
                    if tables.is_empty() {
                        ctx.push(file.key_error(
                            Code::InvalidValue,
                            &format!("{cat}/split_by"),
                            "`split_by` splits carried lines; add `lines`",
                        ));
                    } else if !tables.iter().any(|t| t.children.contains_key(split)) {
                        let known: Vec<&str> = tables
                            .iter()
                            .flat_map(|t| t.children.keys().map(String::as_str))
                            .collect();
                        ctx.push(
                            file.error(
                                Code::UnknownField,
                                &format!("{cat}/split_by"),
                                format!("unknown line field `{split}`"),
                            )
                            .suggest(split, known),
                        );
                    }
                }
                if let Some(back) = &create.link_back {
                    let bat = format!("{cat}/link_back");
                    if let Some(f) = ctx.field(file, &bat, &entity.fields, back, &entity.name) {
                        let own = Some((target.app.clone(), target.name.clone()));
                        if f.kind != FieldType::Link || f.target != own {
                            ctx.push(file.error(
                                Code::WrongFieldType,
                                &bat,
                                format!("`{back}` must be a link to `{}`", create.entity),
                            ));
                        }
                    }
                }
            }
            Effect::Update(update) => {
                let uat = format!("{eat}/update");
                let Some(link) = ctx
                    .field(
                        file,
                        &format!("{uat}/link"),
                        &entity.fields,
                        &update.link,
                        &entity.name,
                    )
                    .cloned()
                else {
                    continue;
                };
                let target = match (&link.kind, &link.target) {
                    (FieldType::Link, Some((app, name))) => ctx.ws.entity(app, name),
                    _ => {
                        ctx.push(file.error(
                            Code::WrongFieldType,
                            &format!("{uat}/link"),
                            format!("`{}` is not a link field", update.link),
                        ));
                        continue;
                    }
                };
                let Some(target) = target else { continue };
                for (name, value) in &update.set {
                    let sat = format!("{uat}/set/{}", crate::source::escape(name));
                    if let Some(f) = ctx.field(file, &sat, &target.fields, name, &target.name) {
                        let f = f.clone();
                        ctx.value(file, &sat, value, &f, name, &vars);
                    }
                }
            }
            Effect::Notify(notify) => {
                ctx.recipients(
                    file,
                    &format!("{eat}/notify/to"),
                    &notify.to,
                    &entity.fields,
                    &entity.name,
                );
            }
            Effect::Run(script) => {
                ctx.inline_script(file, &format!("{eat}/run"), script, 0, &HOOK_VARIABLES)
            }
            Effect::Push(push) => {
                super::connector::check_push(ctx, file, &format!("{eat}/push"), push, entity)
            }
            Effect::CreateAccount(account) => {
                let aat = format!("{eat}/create_account");
                ctx.roles(file, &format!("{aat}/roles"), &account.roles);
                if account.roles.is_empty() {
                    ctx.push(file.key_error(
                        Code::MissingKey,
                        &format!("{aat}/roles"),
                        "an account needs at least one role",
                    ));
                }
                let text = super::info::FieldInfo::text();
                for (key, value) in [
                    ("username", Some(&account.username)),
                    ("email", Some(&account.email)),
                    ("display_name", account.display_name.as_ref()),
                ] {
                    if let Some(value) = value {
                        ctx.value(file, &format!("{aat}/{key}"), value, &text, key, &vars);
                    }
                }
                for (name, value) in &account.attributes {
                    let at = format!("{aat}/attributes/{}", crate::source::escape(name));
                    match ctx.ws.user_attributes.get(name).cloned() {
                        Some(attribute) => ctx.value(file, &at, value, &attribute, name, &vars),
                        None => {
                            let known: Vec<&str> =
                                ctx.ws.user_attributes.keys().map(String::as_str).collect();
                            ctx.push(
                                file.key_error(
                                    Code::UnknownVariable,
                                    &at,
                                    format!("unknown user attribute `{name}`"),
                                )
                                .suggest(name, known)
                                .with_help_if_none(
                                    "declare it under `user_attributes` in roles.yaml",
                                ),
                            );
                        }
                    }
                }
                if let Some(back) = &account.link_back {
                    let bat = format!("{aat}/link_back");
                    if let Some(f) = ctx.field(file, &bat, &entity.fields, back, &entity.name)
                        && f.kind != FieldType::User
                    {
                        ctx.push(file.error(
                            Code::WrongFieldType,
                            &bat,
                            format!(
                                "`{back}` is {}; the account goes into a user field",
                                a_field(f.kind)
                            ),
                        ));
                    }
                }
            }
        }
    }
}
