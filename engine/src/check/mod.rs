//! Semantic checks: everything that makes a well-formed file a correct model.
//! References resolve, workflows are sound graphs, filters name real fields
//! with fitting values, scripts compile in the sandbox. Only a clean check
//! produces a [`CheckedModel`].

mod access;
mod app;
mod automation;
mod connector;
mod dashboard;
mod entity;
mod info;
mod workflow;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub use connector::{MAX_TIMEOUT_SECONDS, Placeholder, path_placeholders, url_variable};
pub use entity::numbering_pattern as entity_numbering_pattern;
pub use info::{EntityInfo, FieldInfo, SYSTEM_FIELDS, Workspace, split_ref};

use crate::diagnostic::{Code, Diagnostic, Diagnostics, Span};
use crate::filter::{self, Expr, FilterError, FilterErrorKind};
use crate::load::{self, LoadedApp};
use crate::model::{Filter, Recipient, ValueExpr};
use crate::schema::FileKind;
use crate::script::ScriptSandbox;
use crate::source::SourceFile;
use info::EntityScope;

/// A set of apps that passed every check. Only [`check`] builds one.
#[derive(Debug, Clone)]
pub struct CheckedModel {
    apps: Vec<LoadedApp>,
}

impl CheckedModel {
    /// The apps, in the order they were named.
    pub fn apps(&self) -> &[LoadedApp] {
        &self.apps
    }

    /// An app by name.
    pub fn app(&self, name: &str) -> Option<&LoadedApp> {
        self.apps.iter().find(|a| a.name() == name)
    }
}

/// The outcome of checking: the model if there was no error, and every diagnostic.
#[derive(Debug)]
pub struct CheckReport {
    pub model: Option<CheckedModel>,
    pub diagnostics: Diagnostics,
}

/// Loads and checks app folders together. Apps named in `depends` that are not
/// in `dirs` are looked for beside the app that needs them.
pub fn check(dirs: &[PathBuf]) -> CheckReport {
    let mut diags = Diagnostics::default();
    let mut apps: Vec<LoadedApp> = Vec::new();
    let mut queue: Vec<PathBuf> = dirs.to_vec();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    while let Some(dir) = queue.first().cloned() {
        queue.remove(0);
        let key = dir.canonicalize().unwrap_or_else(|_| dir.clone());
        if !seen.insert(key) {
            continue;
        }
        if !dir.is_dir() {
            diags.push(Diagnostic::file(Code::BadFile, &dir, "no such app folder"));
            continue;
        }
        let app = load::load_app(&dir, &mut diags);
        if let Some(manifest) = &app.manifest {
            for dep in &manifest.value.depends {
                let known = apps.iter().chain([&app]).any(|a| a.name() == *dep);
                let sibling = dir.parent().unwrap_or(Path::new(".")).join(dep);
                if !known && sibling.join("app.yaml").is_file() {
                    queue.push(sibling);
                }
            }
        }
        apps.push(app);
    }
    let ws = Workspace::build(&apps);
    let sandbox = ScriptSandbox::new();
    let mut names: HashSet<String> = HashSet::new();
    for app in &apps {
        if !names.insert(app.name()) {
            let path = app.dir.join("app.yaml");
            diags.push(Diagnostic::file(
                Code::DuplicateName,
                path,
                format!("two apps are named `{}`", app.name()),
            ));
        }
        let mut ctx = Ctx::new(&ws, app, &sandbox, &mut diags);
        app::check_manifest(&mut ctx);
        for item in app.entities.values() {
            entity::check_entity(&mut ctx, item);
        }
        for item in app.workflows.values() {
            workflow::check_workflow(&mut ctx, item);
        }
        access::check_roles(&mut ctx);
        for item in app.dashboards.values() {
            dashboard::check_dashboard(&mut ctx, item);
        }
        for item in app.alerts.values() {
            automation::check_alert(&mut ctx, item);
        }
        for item in app.jobs.values() {
            automation::check_job(&mut ctx, item);
        }
        for item in app.tests.values() {
            app::check_test(&mut ctx, item);
        }
        for item in app.data.values() {
            app::check_data(&mut ctx, item);
        }
        for item in app.connectors.values() {
            connector::check_connector(&mut ctx, item);
        }
        ctx.report_unused_scripts();
    }
    diags.sort();
    let model = (!diags.has_errors()).then_some(CheckedModel { apps });
    CheckReport {
        model,
        diagnostics: diags,
    }
}

/// Parses a duration (`30s`, `30m`, `4h`, `3d`, `2w`) into seconds.
pub fn duration_seconds(text: &str) -> Option<i64> {
    let unit = text.chars().last()?;
    let n: i64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return None,
    };
    (n >= 0).then_some(n * scale)
}

/// Names a script can use besides the fields of its record.
const EXPRESSION_VARIABLES: [&str; 4] = ["record", "user", "today", "now"];
/// Names a hook (statements run on an event) can use.
pub const HOOK_VARIABLES: [&str; 7] =
    ["record", "old", "user", "today", "now", "action", "comment"];
/// Names a job can use.
pub const JOB_VARIABLES: [&str; 3] = ["user", "today", "now"];

/// The state of checking one app: where to report, what is known.
pub(crate) struct Ctx<'a> {
    pub ws: &'a Workspace,
    pub app: &'a LoadedApp,
    pub app_name: String,
    sandbox: &'a ScriptSandbox,
    pub diags: &'a mut Diagnostics,
    used_scripts: HashSet<String>,
}

impl<'a> Ctx<'a> {
    fn new(
        ws: &'a Workspace,
        app: &'a LoadedApp,
        sandbox: &'a ScriptSandbox,
        diags: &'a mut Diagnostics,
    ) -> Self {
        Ctx {
            ws,
            app,
            app_name: app.name(),
            sandbox,
            diags,
            used_scripts: HashSet::new(),
        }
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Resolves `entity` or `app.entity` from this app. Reports what is wrong.
    pub fn entity(
        &mut self,
        file: &SourceFile,
        ptr: &str,
        reference: &str,
    ) -> Option<&'a EntityInfo> {
        let (app, name) = info::split_ref(&self.app_name, reference);
        if app != self.app_name {
            let depends = self
                .ws
                .apps
                .get(&self.app_name)
                .cloned()
                .unwrap_or_default();
            // An app that exists beside this one (or is being checked) but is not
            // declared a dependency gets the fix, not "unknown".
            let beside = self
                .app
                .dir
                .parent()
                .is_some_and(|p| p.join(&app).join("app.yaml").is_file());
            let known_app = self.ws.apps.contains_key(&app);
            if !known_app && !beside {
                let known: Vec<&str> = self.ws.apps.keys().map(String::as_str).collect();
                self.push(
                    file.error(Code::UnknownApp, ptr, format!("unknown app `{app}`"))
                        .with_label("no app of this name is being checked")
                        .suggest(&app, known),
                );
                return None;
            }
            if !known_app || !depends.contains(&app) {
                self.push(
                    file.error(
                        Code::UnknownApp,
                        ptr,
                        format!("app `{app}` is not a dependency of `{}`", self.app_name),
                    )
                    .with_help(format!("add `{app}` to `depends` in app.yaml")),
                );
                return None;
            }
        }
        if let Some(info) = self.ws.entity(&app, &name) {
            return Some(info);
        }
        let broken =
            app == self.app_name && self.app.broken.contains(&(FileKind::Entity, name.clone()));
        if !broken {
            let known = self.ws.entity_names(&app);
            self.push(
                file.error(
                    Code::UnknownEntity,
                    ptr,
                    format!("unknown entity `{reference}`"),
                )
                .with_label(format!("no entity named `{name}` in app `{app}`"))
                .suggest(&name, known),
            );
        }
        None
    }

    /// Resolves a field name among `fields`. Reports an unknown one.
    pub fn field<'f>(
        &mut self,
        file: &SourceFile,
        ptr: &str,
        fields: &'f indexmap::IndexMap<String, FieldInfo>,
        name: &str,
        owner: &str,
    ) -> Option<&'f FieldInfo> {
        match fields.get(name) {
            Some(f) => Some(f),
            None => {
                self.push(
                    file.error(Code::UnknownField, ptr, format!("unknown field `{name}`"))
                        .with_label(format!("`{owner}` has no such field"))
                        .suggest(name, fields.keys().map(String::as_str)),
                );
                None
            }
        }
    }

    /// Resolves every field of a list.
    pub fn fields(
        &mut self,
        file: &SourceFile,
        ptr: &str,
        fields: &indexmap::IndexMap<String, FieldInfo>,
        names: &[String],
        owner: &str,
    ) {
        for (i, name) in names.iter().enumerate() {
            self.field(file, &format!("{ptr}/{i}"), fields, name, owner);
        }
    }

    /// Checks that a role exists in some app of the workspace.
    pub fn role(&mut self, file: &SourceFile, ptr: &str, name: &str) {
        if !self.ws.roles.contains_key(name) {
            let known = self.ws.role_names();
            self.push(
                file.error(Code::UnknownRole, ptr, format!("unknown role `{name}`"))
                    .with_label("no app declares this role")
                    .suggest(name, known)
                    .with_help_if_none("declare it under `roles` in a roles.yaml"),
            );
        }
    }

    pub fn roles(&mut self, file: &SourceFile, ptr: &str, names: &[String]) {
        for (i, name) in names.iter().enumerate() {
            self.role(file, &format!("{ptr}/{i}"), name);
        }
    }

    /// Parses and checks a filter over `fields`; problems are located inside it.
    pub fn filter(
        &mut self,
        file: &SourceFile,
        ptr: &str,
        filter: &Filter,
        fields: &indexmap::IndexMap<String, FieldInfo>,
    ) -> Option<Expr> {
        let scope = EntityScope {
            ws: self.ws,
            fields,
        };
        match filter::check(filter, &scope) {
            Ok(expr) => Some(expr),
            Err(errors) => {
                for e in errors {
                    self.filter_error(file, ptr, e);
                }
                None
            }
        }
    }

    fn filter_error(&mut self, file: &SourceFile, ptr: &str, e: FilterError) {
        let at = format!("{ptr}{}", e.pointer);
        let (code, on_key) = match e.kind {
            FilterErrorKind::UnknownField => (Code::UnknownField, true),
            FilterErrorKind::UnknownOperator => (Code::FilterOperator, true),
            FilterErrorKind::BadValue => (Code::FilterValue, false),
            FilterErrorKind::UnknownVariable => (Code::UnknownVariable, false),
            FilterErrorKind::Malformed => (Code::FilterValue, false),
        };
        let d = if on_key {
            file.key_error(code, &at, e.message)
        } else {
            file.error(code, &at, e.message)
        };
        let wrong = e.pointer.rsplit('/').next().unwrap_or_default().to_owned();
        let wrong = match file_value(file, &at) {
            Some(v) if !on_key => v,
            _ => wrong,
        };
        let d = d.suggest(&wrong, e.candidates.iter().map(String::as_str));
        let d = if e.kind == FilterErrorKind::UnknownOperator {
            d.with_help_if_none(format!("operators: {}", e.candidates.join(", ")))
        } else {
            d
        };
        self.push(d);
    }

    /// Checks a stored value: a literal of the field's type, a `$variable`, or `=expression`.
    pub fn value(
        &mut self,
        file: &SourceFile,
        ptr: &str,
        value: &ValueExpr,
        field: &FieldInfo,
        name: &str,
        variables: &[&str],
    ) {
        if let Some(expr) = value.as_str().and_then(|s| s.strip_prefix('=')) {
            self.inline_script(file, ptr, expr, 1, variables);
            return;
        }
        let scope = EntityScope {
            ws: self.ws,
            fields: &field.children,
        };
        if let Err(errors) = filter::check_value(value, &field.facts(), name, &scope) {
            for e in errors {
                self.filter_error(file, ptr, e);
            }
        }
    }

    /// Compiles a script written inside a YAML value. `skip` is how many leading
    /// characters of the value are not script (the `=` of an expression).
    pub fn inline_script(
        &mut self,
        file: &SourceFile,
        ptr: &str,
        source: &str,
        skip: u32,
        variables: &[&str],
    ) {
        let Err(e) = self.sandbox.compile(source, variables) else {
            return;
        };
        let offset: usize = source
            .split('\n')
            .take(e.line.saturating_sub(1) as usize)
            .map(|l| l.chars().count() + 1)
            .sum::<usize>()
            + e.column.saturating_sub(1) as usize
            + skip as usize;
        let value: String = "=".repeat(skip as usize) + source;
        let d = file.error(Code::Script, ptr, format!("script error: {}", e.message));
        let unknown = undefined_variable(&e.message);
        let d = match file.locate_in_value(ptr, &value, offset) {
            // Mark the whole unknown name, not just its first letter.
            Some(span) => file.at(
                d,
                Span {
                    len: unknown.map_or(1, |n| n.chars().count() as u32),
                    ..span
                },
            ),
            None => d,
        };
        let d = match unknown {
            Some(name) => d.suggest(name, variables.iter().copied()),
            None => d,
        };
        self.push(d.with_label("here"));
    }

    /// Compiles a rule given inline or as a file under the app folder.
    pub fn rule_source(
        &mut self,
        file: &SourceFile,
        ptr: &str,
        script: Option<&String>,
        path: Option<&String>,
        variables: &[&str],
    ) {
        match (script, path) {
            (Some(source), None) => {
                self.inline_script(file, &format!("{ptr}/script"), source, 0, variables)
            }
            (None, Some(rel)) => {
                let Some(script_file) = self.app.scripts.get(rel.as_str()) else {
                    self.push(
                        file.error(
                            Code::MissingFile,
                            &format!("{ptr}/file"),
                            format!("no file `{rel}` in the app"),
                        )
                        .with_help("scripts live under `rules/` in the app folder"),
                    );
                    return;
                };
                self.used_scripts.insert(rel.clone());
                if let Err(e) = self.sandbox.compile(&script_file.text, variables) {
                    let line = script_file
                        .text
                        .lines()
                        .nth(e.line.saturating_sub(1) as usize)
                        .map(str::to_owned);
                    let mut d = Diagnostic::file(
                        Code::Script,
                        &script_file.path,
                        format!("script error: {}", e.message),
                    )
                    .with_label("here");
                    d.span = Some(Span {
                        line: e.line,
                        column: e.column,
                        len: 1,
                    });
                    d.source_line = line;
                    self.push(d);
                }
            }
            (Some(_), Some(_)) => self.push(file.error(
                Code::InvalidValue,
                ptr,
                "give either `script` or `file`, not both",
            )),
            (None, None) => {
                self.push(file.error(Code::MissingKey, ptr, "missing key `script` (or `file`)"))
            }
        }
    }

    /// Checks who a notification goes to, for records with `fields`.
    pub fn recipients(
        &mut self,
        file: &SourceFile,
        ptr: &str,
        recipients: &[Recipient],
        fields: &indexmap::IndexMap<String, FieldInfo>,
        owner: &str,
    ) {
        for (i, r) in recipients.iter().enumerate() {
            match r {
                Recipient::Role(role) => self.role(file, &format!("{ptr}/{i}/role"), role),
                Recipient::Field(name) => {
                    let at = format!("{ptr}/{i}/field");
                    if let Some(f) = self.field(file, &at, fields, name, owner)
                        && f.kind != crate::model::FieldType::User
                    {
                        self.push(
                            file.error(
                                Code::WrongFieldType,
                                &at,
                                format!("`{name}` is not a user field"),
                            )
                            .with_help("notifications go to the users in a `user` field"),
                        );
                    }
                }
                Recipient::User(_) => {}
            }
        }
    }

    /// Checks a duration like `4h`.
    pub fn duration(&mut self, file: &SourceFile, ptr: &str, text: &str) {
        if duration_seconds(text).is_none() {
            self.push(
                file.error(Code::Duration, ptr, format!("`{text}` is not a duration"))
                    .with_help("write a number and a unit: `30m`, `4h`, `3d`, `2w`"),
            );
        }
    }

    /// Checks a schedule: a 5-field cron expression or `every <duration>`.
    pub fn schedule(&mut self, file: &SourceFile, ptr: &str, text: &str) {
        if let Some(every) = text.strip_prefix("every ") {
            if duration_seconds(every.trim()).is_none_or(|s| s == 0) {
                self.push(
                    file.error(Code::Schedule, ptr, format!("`{every}` is not a duration"))
                        .with_help("`every 15m`, `every 1h`, `every 1d`"),
                );
            }
            return;
        }
        let fields = text.split_whitespace().count();
        let parsed = text.parse::<croner::Cron>();
        if fields != 5 || parsed.is_err() {
            let why = match parsed {
                Err(e) if fields == 5 => e.to_string(),
                _ => format!("a cron expression has 5 fields, this has {fields}"),
            };
            self.push(
                file.error(
                    Code::Schedule,
                    ptr,
                    format!("invalid schedule `{text}`: {why}"),
                )
                .with_help("`0 8 * * *` (08:00 daily), `*/15 * * * *`, or `every 15m`"),
            );
        }
    }

    /// Variables of a script over an entity's records.
    pub fn record_variables(fields: &'a indexmap::IndexMap<String, FieldInfo>) -> Vec<&'a str> {
        fields
            .keys()
            .map(String::as_str)
            .chain(EXPRESSION_VARIABLES)
            .collect()
    }

    fn report_unused_scripts(&mut self) {
        let unused: Vec<PathBuf> = self
            .app
            .scripts
            .iter()
            .filter(|(rel, _)| !self.used_scripts.contains(rel.as_str()))
            .map(|(_, f)| f.path.clone())
            .collect();
        for path in unused {
            self.push(Diagnostic::file(
                Code::UnusedFile,
                path,
                "no rule or job uses this file",
            ));
        }
    }
}

/// The name in Rhai's "Undefined variable: x" message.
fn undefined_variable(message: &str) -> Option<&str> {
    message.strip_prefix("Undefined variable: ").map(str::trim)
}

fn file_value(file: &SourceFile, ptr: &str) -> Option<String> {
    let span = file.value_span(ptr)?;
    let line = file
        .text
        .lines()
        .nth(span.line.saturating_sub(1) as usize)?;
    Some(
        line.chars()
            .skip(span.column.saturating_sub(1) as usize)
            .take(span.len as usize)
            .collect(),
    )
}
