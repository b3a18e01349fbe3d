//! What an action does, inside its transaction: values computed for the
//! record (`set`), records created from it (conversions, one per supplier
//! with `split_by`) and linked records updated. Notifications are gathered
//! here and sent once the record is written, so they see its final values.

use sea_orm::DatabaseTransaction;
use serde_json::{Map, Value as Json};
use trellis_engine::model::{
    Channel, CreateAccount, CreateRecord, Effect, Label, Notify, Recipient, Translations,
    UpdateLinked,
};

use super::WorkflowModel;
use crate::catalog::{Catalog, EntityModel};
use crate::hooks::{HookRun, Script, Vars};
use crate::notify::{About, Notification};
use crate::read::Access;
use crate::record::{FieldError, RecordError};
use crate::write::RecordWriter;
use crate::write::prepare::{
    Context, Prepared, derived, evaluate, evaluate_line, record_map, variable,
};

/// Effects running against one record.
pub struct Run<'a> {
    pub writer: &'a RecordWriter,
    pub catalog: &'a Catalog,
    pub workflow: &'a WorkflowModel,
    pub entity: &'a EntityModel,
    pub txn: &'a DatabaseTransaction,
    pub cx: &'a Context<'a>,
    /// The record as the action sees it: stored values with the inputs applied.
    pub record: &'a Prepared,
    /// Field values the action writes to the record.
    pub patch: Map<String, Json>,
    /// Notifications to send after the write.
    pub notices: Vec<Notify>,
    /// What `run` effects and `transition` rules said with `warn(message)`.
    pub warnings: Vec<FieldError>,
    /// Hooks (`run` effects, `transition` rules) run through this, with the
    /// record API under the acting user's permissions.
    pub hooks: &'a HookRun<'a>,
    pub action: &'a str,
    pub comment: Option<&'a str>,
}

impl Run<'_> {
    pub async fn apply(&mut self, effects: &[Effect]) -> Result<(), RecordError> {
        for effect in effects {
            match effect {
                Effect::Set(values) => {
                    for (field, expr) in values {
                        let value = self.value(expr, &[])?;
                        let value = fitted(&self.entity.fields, field, expr, value);
                        self.patch.insert(field.clone(), value);
                    }
                }
                Effect::Create(create) => self.create(create).await?,
                Effect::Update(update) => self.update(update).await?,
                Effect::Notify(notify) => self.notices.push(notify.clone()),
                Effect::Run(source) => {
                    let script = self
                        .workflow
                        .hook(source)
                        .ok_or_else(|| script_error(source, "did not compile"))?;
                    self.hook(script).await?;
                }
                Effect::Push(push) => crate::connect::enqueue_push(self, push).await?,
                Effect::CreateAccount(account) => self.create_account(account).await?,
            }
        }
        Ok(())
    }

    /// Opens a login for the record (a supplier's portal account) with a
    /// generated password, which goes to the account's e-mail through the
    /// outbox, committed with the action.
    async fn create_account(&mut self, account: &CreateAccount) -> Result<(), RecordError> {
        let text = |value: Json, what: &str| match value {
            Json::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            _ => Err(RecordError::Invalid(vec![FieldError::new(
                "",
                "create_account",
                format!("the new account has no {what}"),
            )])),
        };
        let username = text(self.value(&account.username, &[])?, "username")?;
        let email = text(self.value(&account.email, &[])?, "e-mail address")?;
        let display_name = match &account.display_name {
            Some(expr) => self.value(expr, &[])?.as_str().map(str::to_owned),
            None => None,
        };
        let mut attributes = Map::new();
        for (name, expr) in &account.attributes {
            attributes.insert(name.clone(), self.value(expr, &[])?);
        }
        let password = crate::account::generate_password()?;
        let change = crate::account::AccountChange {
            username: Some(username.clone()),
            password: Some(password.clone()),
            display_name,
            email: Some(email),
            roles: Some(account.roles.clone()),
            attributes: Some(attributes),
            ..Default::default()
        };
        let dialect = self.writer.store().dialect();
        let id = crate::account::create_user_in(self.txn, dialect, change)
            .await
            .map_err(|e| match e {
                crate::account::AccountError::Store(e) => RecordError::Store(e),
                other => RecordError::Invalid(vec![FieldError::new(
                    "",
                    "create_account",
                    format!("the new account: {other}"),
                )]),
            })?;
        let welcome = Notification {
            recipients: vec![Recipient::User(username.clone())],
            channels: vec![Channel::Email],
            subject: Some(Label::Translated(Translations {
                en: "Your account".into(),
                zh: Some("您的账号".into()),
            })),
            message: Label::Translated(Translations {
                en: format!(
                    "Your account is {username}, your password {password}. Please change it when you first sign in."
                ),
                zh: Some(format!(
                    "您的账号：{username}，密码：{password}。请在首次登录后修改密码。"
                )),
            }),
        };
        let about = About {
            app: &self.entity.app,
            entity: &self.entity.name,
            record_id: self
                .record
                .values
                .get("id")
                .and_then(Json::as_i64)
                .unwrap_or_default(),
            record: &self.record.values,
        };
        crate::notify::notify(self.txn, dialect, &welcome, &about).await?;
        if let Some(link) = &account.link_back {
            self.patch.insert(link.clone(), Json::from(id));
        }
        Ok(())
    }

    /// Runs a hook on the record as the action has it so far; the fields the
    /// hook changes in `record` join what the action writes.
    pub async fn hook(&mut self, script: &Script) -> Result<(), RecordError> {
        let mut current = self.record.clone();
        for (field, value) in &self.patch {
            current.values.insert(field.clone(), value.clone());
        }
        let record = record_map(self.entity, &current);
        // Compared in the form the hook's changes come back in, so that only
        // what it changed counts (`2.0` stored is `2` from a script).
        let before = crate::hooks::api::map_of(record.clone().try_cast().unwrap_or_default());
        let vars = Vars {
            record: Some(record),
            old: None,
            action: Some(self.action.to_owned()),
            comment: self.comment.map(str::to_owned),
        };
        let ran = self.hooks.run(script, vars).await?;
        self.warnings.extend(ran.warnings);
        let Some(after) = ran.record else {
            return Ok(());
        };
        self.patch.extend(crate::write::hooks::hook_changes(
            self.entity,
            &before,
            after,
        ));
        Ok(())
    }

    /// An effect value: `=expression` over the record, `$today`, `$now`,
    /// `$user.<attribute>`, or a literal.
    fn value(&self, expr: &Json, extra: &[(&str, &Json)]) -> Result<Json, RecordError> {
        let Some(text) = expr.as_str() else {
            return Ok(expr.clone());
        };
        if let Some(source) = text.strip_prefix('=') {
            let script = self.script(source)?;
            return evaluate(self.entity, self.record, self.cx, script, extra)
                .map_err(|e| script_error(source, &e));
        }
        Ok(variable(text, self.cx).unwrap_or_else(|| expr.clone()))
    }

    fn script(&self, source: &str) -> Result<&trellis_engine::script::CompiledScript, RecordError> {
        self.workflow
            .expression(source)
            .ok_or_else(|| script_error(source, "did not compile"))
    }

    async fn create(&mut self, create: &CreateRecord) -> Result<(), RecordError> {
        let target = self.target(&create.entity)?;
        // Without `split_by`, one record; with it, one per distinct value of that
        // field among the source lines, carrying only those lines.
        let groups: Vec<(Json, Option<Json>)> = match &create.split_by {
            None => vec![(Json::Null, None)],
            Some(field) => {
                let mut seen: Vec<Json> = Vec::new();
                for mapping in create.lines.values() {
                    for line in self.record.lines.get(&mapping.from).into_iter().flatten() {
                        let v = line.get(field).cloned().unwrap_or(Json::Null);
                        if !v.is_null() && !seen.contains(&v) {
                            seen.push(v);
                        }
                    }
                }
                seen.into_iter().map(|v| (v.clone(), Some(v))).collect()
            }
        };
        let mut first = None;
        for (split, filter) in groups {
            let extra: Vec<(&str, &Json)> = vec![("split", &split)];
            let mut input = Map::new();
            for (field, expr) in &create.fields {
                let value = self.value(expr, &extra)?;
                input.insert(field.clone(), fitted(&target.fields, field, expr, value));
            }
            for (table, mapping) in &create.lines {
                let mut rows = Vec::new();
                for line in self.record.lines.get(&mapping.from).into_iter().flatten() {
                    if let (Some(v), Some(field)) = (&filter, &create.split_by)
                        && line.get(field) != Some(v)
                    {
                        continue;
                    }
                    if let Some(when) = &mapping.when
                        && !line_matches(self.entity, &mapping.from, when, line, self.cx)
                    {
                        continue;
                    }
                    let mut row = Map::new();
                    let columns = target.lines.get(table).map(|l| &l.fields);
                    for (field, expr) in &mapping.fields {
                        let value = self.line_value(&mapping.from, line, expr)?;
                        let value = match columns {
                            Some(columns) => fitted(columns, field, expr, value),
                            None => value,
                        };
                        row.insert(field.clone(), value);
                    }
                    rows.push(Json::Object(row));
                }
                input.insert(table.clone(), Json::Array(rows));
            }
            let access = Access::everything().for_user(self.cx.actor);
            let (id, _) = self
                .writer
                .create_in(self.txn, &target, &input, &access, self.cx)
                .await
                .map_err(|e| in_effect(&format!("creating a {}", target.name), e))?;
            first.get_or_insert(id);
        }
        if let (Some(link), Some(id)) = (&create.link_back, first) {
            self.patch.insert(link.clone(), Json::from(id));
        }
        Ok(())
    }

    fn line_value(
        &self,
        table: &str,
        line: &Map<String, Json>,
        expr: &Json,
    ) -> Result<Json, RecordError> {
        match expr.as_str().and_then(|t| t.strip_prefix('=')) {
            Some(source) => {
                let script = self.script(source)?;
                evaluate_line(self.entity, table, line, self.record, self.cx, script)
                    .map_err(|e| script_error(source, &e))
            }
            None => self.value(expr, &[]),
        }
    }

    async fn update(&mut self, update: &UpdateLinked) -> Result<(), RecordError> {
        let Some(id) = self.record.values.get(&update.link).and_then(Json::as_i64) else {
            return Ok(());
        };
        let target_name = self
            .entity
            .fields
            .get(&update.link)
            .and_then(|f| f.def.target.clone())
            .unwrap_or_default();
        let target = self.target(&target_name)?;
        let mut patch = Map::new();
        for (field, expr) in &update.set {
            let value = self.value(expr, &[])?;
            patch.insert(field.clone(), fitted(&target.fields, field, expr, value));
        }
        let access = Access::everything().for_user(self.cx.actor);
        let (current, base) = self.writer.lock(self.txn, &target, id, &access).await?;
        self.writer
            .update_in(
                self.txn,
                &target,
                id,
                current.version,
                &base,
                &patch,
                &access,
                self.cx,
            )
            .await
            .map_err(|e| in_effect(&format!("updating {} #{id}", target.name), e))?;
        Ok(())
    }

    /// An entity named by an effect: `entity` in this app or `app.entity`.
    fn target(&self, name: &str) -> Result<std::sync::Arc<EntityModel>, RecordError> {
        let (app, entity) = name.split_once('.').unwrap_or((&self.entity.app, name));
        self.catalog
            .entity(app, entity)
            .ok_or_else(|| RecordError::UnknownEntity(name.to_owned()))
    }
}

/// An `=expression`'s value for `field` of `fields`, rounded to the field's
/// scale: the model derived it, so it is not refused for its decimals.
fn fitted(
    fields: &indexmap::IndexMap<String, crate::catalog::FieldModel>,
    field: &str,
    expr: &Json,
    value: Json,
) -> Json {
    match fields.get(field) {
        Some(f) if expr.as_str().is_some_and(|t| t.starts_with('=')) => derived(f, value),
        _ => value,
    }
}

/// Whether a source line matches a line mapping's `when`.
fn line_matches(
    entity: &EntityModel,
    table: &str,
    when: &trellis_engine::model::Filter,
    line: &Map<String, Json>,
    cx: &Context,
) -> bool {
    let Some(lines) = entity.lines.get(table) else {
        return false;
    };
    let as_entity = EntityModel {
        app: entity.app.clone(),
        name: table.to_owned(),
        table: lines.table.clone(),
        fields: lines.fields.clone(),
        ..EntityModel::default()
    };
    crate::write::prepare::condition_holds(&as_entity, when, line, cx)
}

fn script_error(source: &str, message: &str) -> RecordError {
    RecordError::Invalid(vec![FieldError::new(
        "",
        "script",
        format!("effect `={source}`: {message}"),
    )])
}

/// An error of a record an effect writes, said as such.
fn in_effect(what: &str, error: RecordError) -> RecordError {
    match error {
        RecordError::Invalid(errors) => RecordError::Invalid(
            errors
                .into_iter()
                .map(|e| FieldError {
                    message: format!("{what}: {} ({})", e.message, e.field),
                    field: String::new(),
                    code: e.code,
                })
                .collect(),
        ),
        other => other,
    }
}

/// What an action leaves for after the write: its notifications, rendered
/// from the record as written, and the integration event
/// `<app>.<entity>.<action>` for subscribed webhooks. Both go out through the
/// outbox, in the action's transaction.
pub struct Sent<'a> {
    pub entity: &'a EntityModel,
    pub id: i64,
    pub record: &'a Prepared,
    pub action: &'a str,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub user: i64,
}

pub async fn send(
    txn: &DatabaseTransaction,
    dialect: crate::store::Dialect,
    sent: Sent<'_>,
    notices: &[Notify],
) -> Result<(), RecordError> {
    let about = crate::notify::About {
        app: &sent.entity.app,
        entity: &sent.entity.name,
        record_id: sent.id,
        record: &sent.record.values,
    };
    for notice in notices {
        let notification = crate::notify::Notification {
            recipients: notice.to.clone(),
            channels: notice.channels.clone(),
            subject: notice.subject.clone(),
            message: notice.message.clone(),
        };
        crate::notify::notify(txn, dialect, &notification, &about).await?;
    }
    let topic = format!("{}.{}.{}", sent.entity.app, sent.entity.name, sent.action);
    let payload = serde_json::json!({
        "app": sent.entity.app,
        "entity": sent.entity.name,
        "id": sent.id,
        "action": sent.action,
        "from": sent.from,
        "to": sent.to,
        "user": sent.user,
        "record": sent.record.values,
    });
    crate::notify::publish(txn, dialect, &topic, &payload).await?;
    Ok(())
}
