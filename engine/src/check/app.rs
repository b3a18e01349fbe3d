//! Checks of the manifest (name, dependencies, menu), app tests and demo data.

use std::collections::HashMap;

use indexmap::IndexMap;

use super::Ctx;
use super::info::EntityInfo;
use crate::diagnostic::Code;
use crate::load::{Item, valid_name};
use crate::model::{AppTest, DataFile, Filter, MenuItem, TestUser};
use crate::source::{SourceFile, escape};

pub(super) fn check_manifest(ctx: &mut Ctx) {
    let Some(item) = ctx.app.manifest.as_ref() else {
        return;
    };
    let file = &*item.file;
    let m = &item.value;
    if !valid_name(&m.name) {
        ctx.push(file.error(
            Code::InvalidName,
            "/name",
            format!("`{}` is not a valid app name", m.name),
        ));
    }
    for (i, dep) in m.depends.iter().enumerate() {
        if dep == &m.name {
            ctx.push(file.error(
                Code::UnknownApp,
                &format!("/depends/{i}"),
                "an app does not depend on itself",
            ));
        } else if !ctx.ws.apps.contains_key(dep) {
            ctx.push(file.error(Code::UnknownApp, &format!("/depends/{i}"), format!("unknown app `{dep}`")).with_help("a dependency is checked with the app: name its folder too, or keep it beside this one"));
        }
    }
    menu(ctx, file, "/menu", &m.menu);
}

fn menu(ctx: &mut Ctx, file: &SourceFile, at: &str, items: &[MenuItem]) {
    for (i, item) in items.iter().enumerate() {
        let iat = format!("{at}/{i}");
        let targets = [
            item.entity.is_some(),
            item.dashboard.is_some(),
            !item.items.is_empty(),
        ]
        .iter()
        .filter(|t| **t)
        .count();
        if targets != 1 {
            ctx.push(file.error(
                Code::InvalidValue,
                &iat,
                "a menu entry opens one `entity`, one `dashboard`, or holds `items`",
            ));
        }
        if let Some(entity) = &item.entity
            && let Some(info) = ctx.entity(file, &format!("{iat}/entity"), entity)
            && let Some(view) = &item.view
        {
            let views: Vec<String> = ctx
                .app
                .entities
                .get(&info.name)
                .map(|e| e.value.views.keys().cloned().collect())
                .unwrap_or_default();
            if info.app == ctx.app_name && !views.contains(view) {
                ctx.push(
                    file.error(
                        Code::UnknownName,
                        &format!("{iat}/view"),
                        format!("`{entity}` has no view `{view}`"),
                    )
                    .suggest(view, views.iter().map(String::as_str)),
                );
            }
        }
        if item.view.is_some() && item.entity.is_none() {
            ctx.push(file.key_error(
                Code::InvalidValue,
                &format!("{iat}/view"),
                "`view` goes with `entity`",
            ));
        }
        if let Some(dashboard) = &item.dashboard
            && !ctx.app.knows(crate::schema::FileKind::Dashboard, dashboard)
        {
            let known: Vec<&str> = ctx.app.dashboards.keys().map(String::as_str).collect();
            ctx.push(
                file.error(
                    Code::UnknownName,
                    &format!("{iat}/dashboard"),
                    format!("unknown dashboard `{dashboard}`"),
                )
                .suggest(dashboard, known),
            );
        }
        if (item.dashboard.is_some() || !item.items.is_empty())
            && item.label.is_none()
            && item.dashboard.is_none()
        {
            ctx.push(file.key_error(Code::MissingKey, &iat, "a menu group needs a `label`"));
        }
        ctx.roles(file, &format!("{iat}/roles"), &item.roles);
        menu(ctx, file, &format!("{iat}/items"), &item.items);
    }
}

pub(super) fn check_test(ctx: &mut Ctx, item: &Item<AppTest>) {
    let file = &*item.file;
    let t = &item.value;
    if let Some(today) = &t.today
        && chrono::NaiveDate::parse_from_str(today, "%Y-%m-%d").is_err()
    {
        ctx.push(file.error(
            Code::InvalidValue,
            "/today",
            format!("`{today}` is not a date (YYYY-MM-DD)"),
        ));
    }
    users(ctx, file, "/users", &t.users);
    let mut keys: HashMap<String, &EntityInfo> = HashMap::new();
    for (i, given) in t.given.iter().enumerate() {
        let at = format!("/given/{i}");
        let Some(entity) = ctx.entity(file, &format!("{at}/entity"), &given.entity) else {
            continue;
        };
        values(ctx, file, &format!("{at}/values"), &given.values, entity);
        if let Some(key) = &given.key {
            keys.insert(key.clone(), entity);
        }
    }
    for (i, step) in t.steps.iter().enumerate() {
        let at = format!("/steps/{i}");
        if !t.users.contains_key(&step.actor) {
            ctx.push(
                file.error(
                    Code::UnknownName,
                    &format!("{at}/as"),
                    format!("unknown user `{}`", step.actor),
                )
                .suggest(&step.actor, t.users.keys().map(String::as_str))
                .with_help("declare the scenario's users under `users`"),
            );
        }
        let verbs = [
            &step.create,
            &step.update,
            &step.delete,
            &step.action,
            &step.run_alert,
            &step.run_job,
            &step.list,
        ];
        if verbs.iter().filter(|v| v.is_some()).count() != 1 {
            ctx.push(file.error(Code::InvalidValue, &at, "a step does exactly one of `create`, `update`, `delete`, `action`, `run_alert`, `run_job`, `list`"));
            continue;
        }
        let mut subject: Option<&EntityInfo> = None;
        if let Some(entity) = step.create.as_ref().or(step.list.as_ref()) {
            let field = if step.create.is_some() {
                "create"
            } else {
                "list"
            };
            subject = ctx.entity(file, &format!("{at}/{field}"), entity);
        }
        if let Some(record) = step.update.as_ref().or(step.delete.as_ref()) {
            let field = if step.update.is_some() {
                "update"
            } else {
                "delete"
            };
            subject = record_entity(ctx, file, &keys, record, &format!("{at}/{field}"));
        }
        if let Some(action) = &step.action {
            match &step.record {
                None => ctx.push(file.key_error(
                    Code::MissingKey,
                    &at,
                    "an `action` step needs the `record` it applies to",
                )),
                Some(record) => {
                    subject = record_entity(ctx, file, &keys, record, &format!("{at}/record"));
                    if let Some(e) = subject
                        && !e.actions.contains(action)
                    {
                        ctx.push(
                            file.error(
                                Code::UnknownName,
                                &format!("{at}/action"),
                                format!("`{}` has no action `{action}`", e.name),
                            )
                            .suggest(action, e.actions.iter().map(String::as_str)),
                        );
                    }
                }
            }
        }
        if let Some(alert) = &step.run_alert
            && !ctx.app.knows(crate::schema::FileKind::Alert, alert)
        {
            let known: Vec<&str> = ctx.app.alerts.keys().map(String::as_str).collect();
            ctx.push(
                file.error(
                    Code::UnknownName,
                    &format!("{at}/run_alert"),
                    format!("unknown alert `{alert}`"),
                )
                .suggest(alert, known),
            );
        }
        if let Some(job) = &step.run_job
            && !ctx.app.knows(crate::schema::FileKind::Job, job)
        {
            let known: Vec<&str> = ctx.app.jobs.keys().map(String::as_str).collect();
            ctx.push(
                file.error(
                    Code::UnknownName,
                    &format!("{at}/run_job"),
                    format!("unknown job `{job}`"),
                )
                .suggest(job, known),
            );
        }
        let Some(entity) = subject else { continue };
        values(ctx, file, &format!("{at}/values"), &step.values, entity);
        if let Some(filter) = &step.filter {
            let filter = Filter(named_records(&filter.0, &keys));
            ctx.filter(file, &format!("{at}/filter"), &filter, &entity.fields);
        }
        if let Some(key) = &step.key
            && (step.create.is_some() || step.list.is_some())
        {
            keys.insert(key.clone(), entity);
        }
        if let Some(expect) = &step.expect {
            values(
                ctx,
                file,
                &format!("{at}/expect/fields"),
                &expect.fields,
                entity,
            );
            if let Some(state) = &expect.state
                && !entity.states.contains(state)
            {
                ctx.push(
                    file.error(
                        Code::UnknownState,
                        &format!("{at}/expect/state"),
                        format!("`{}` has no state `{state}`", entity.name),
                    )
                    .suggest(state, entity.states.iter().map(String::as_str)),
                );
            }
            if let Some(field) = expect.error.as_ref().and_then(|e| e.field.as_ref()) {
                ctx.field(
                    file,
                    &format!("{at}/expect/error/field"),
                    &entity.fields,
                    field,
                    &entity.name,
                );
            }
            for name in expect.created.keys() {
                ctx.entity(file, &format!("{at}/expect/created/{}", escape(name)), name);
            }
            for (j, user) in expect.notified.iter().flatten().enumerate() {
                if !t.users.contains_key(user) {
                    ctx.push(file.error(
                        Code::UnknownName,
                        &format!("{at}/expect/notified/{j}"),
                        format!("unknown user `{user}`"),
                    ));
                }
            }
        }
    }
}

/// The entity of a record named `$key` earlier in the scenario.
fn record_entity<'e>(
    ctx: &mut Ctx,
    file: &SourceFile,
    keys: &HashMap<String, &'e EntityInfo>,
    key: &str,
    ptr: &str,
) -> Option<&'e EntityInfo> {
    let found = keys.get(key.trim_start_matches('$')).copied();
    if found.is_none() {
        ctx.push(file.error(Code::UnknownName, ptr, format!("unknown record `{key}`")).with_help("name records with `key` in `given` or in a `create` or `list` step, and refer to them as `$key`"));
    }
    found
}

/// A step filter's values with each `$key` of an earlier record as an id
/// (`0`), so that the filter is checked like any other; the runner puts in
/// the records' ids.
fn named_records(
    map: &serde_json::Map<String, serde_json::Value>,
    keys: &HashMap<String, &EntityInfo>,
) -> serde_json::Map<String, serde_json::Value> {
    fn value(v: &serde_json::Value, keys: &HashMap<String, &EntityInfo>) -> serde_json::Value {
        match v {
            serde_json::Value::String(text)
                if text.strip_prefix('$').is_some_and(|k| keys.contains_key(k)) =>
            {
                serde_json::Value::from(0)
            }
            serde_json::Value::Array(items) => items.iter().map(|item| value(item, keys)).collect(),
            serde_json::Value::Object(map) => serde_json::Value::Object(named_records(map, keys)),
            other => other.clone(),
        }
    }
    map.iter()
        .map(|(k, v)| (k.clone(), value(v, keys)))
        .collect()
}

/// Field names in test values and demo data must exist (values are checked when they run).
fn values(
    ctx: &mut Ctx,
    file: &SourceFile,
    at: &str,
    values: &serde_json::Map<String, serde_json::Value>,
    entity: &EntityInfo,
) {
    for name in values.keys() {
        if name == "_key" {
            continue;
        }
        ctx.field(
            file,
            &format!("{at}/{}", escape(name)),
            &entity.fields,
            name,
            &entity.name,
        );
    }
}

/// The accounts of a scenario or of demo data: roles that exist, a manager
/// among the same accounts, declared attributes.
fn users(ctx: &mut Ctx, file: &SourceFile, at: &str, users: &IndexMap<String, TestUser>) {
    for (name, user) in users {
        let uat = format!("{at}/{}", escape(name));
        ctx.roles(file, &format!("{uat}/roles"), &user.roles);
        if let Some(manager) = &user.manager
            && !users.contains_key(manager)
        {
            ctx.push(
                file.error(
                    Code::UnknownName,
                    &format!("{uat}/manager"),
                    format!("unknown user `{manager}`"),
                )
                .suggest(manager, users.keys().map(String::as_str)),
            );
        }
        for attr in user.attributes.keys() {
            if !ctx.ws.user_attributes.contains_key(attr) {
                let known: Vec<&str> = ctx.ws.user_attributes.keys().map(String::as_str).collect();
                ctx.push(
                    file.key_error(
                        Code::UnknownVariable,
                        &format!("{uat}/attributes/{}", escape(attr)),
                        format!("unknown user attribute `{attr}`"),
                    )
                    .suggest(attr, known),
                );
            }
        }
    }
}

pub(super) fn check_data(ctx: &mut Ctx, item: &Item<DataFile>) {
    let file = &*item.file;
    let data = &item.value;
    users(ctx, file, "/accounts", &data.accounts);
    let Some(entity_ref) = &data.entity else {
        if !data.records.is_empty() || data.accounts.is_empty() {
            ctx.push(file.error(
                Code::InvalidValue,
                "",
                "a data file holds the `records` of one `entity`, or `accounts`",
            ));
        }
        return;
    };
    if !data.accounts.is_empty() {
        ctx.push(file.error(
            Code::InvalidValue,
            "/accounts",
            "accounts go in a data file of their own, without `entity`",
        ));
    }
    let Some(entity) = ctx.entity(file, "/entity", entity_ref) else {
        return;
    };
    for (i, record) in item.value.records.iter().enumerate() {
        values(ctx, file, &format!("/records/{i}"), record, entity);
        // A demo record may start in any state of its workflow.
        let Some(field) = &entity.state_field else {
            continue;
        };
        if let Some(state) = record.get(field)
            && !state
                .as_str()
                .is_some_and(|s| entity.states.iter().any(|k| k == s))
        {
            ctx.push(file.error(
                Code::UnknownState,
                &format!("/records/{i}/{}", escape(field)),
                format!("`{state}` is not a state of `{}`", entity.name),
            ));
        }
    }
}
