//! The pure half of the write pipeline: input → checked values, before any SQL.
//! Type coercion with per-field errors → defaults → computed fields (Rhai) →
//! required and conditional constraints → validation rules. Every problem of
//! the record is collected and reported together.

use indexmap::IndexMap;
use rhai::{Dynamic, Scope};
use serde_json::{Map, Value as Json};
use trellis_engine::filter::{self, Bindings};
use trellis_engine::model::{FieldType, Filter, RuleEvent, RuleLevel};
use trellis_engine::script::{CompiledScript, FailureKind};

use crate::catalog::{EntityModel, FieldModel, LinesModel};
use crate::hooks::api::map_of;
use crate::record::value::{coerce, datetime_text, decimal};
use crate::record::{Actor, FieldError};

/// Output fields a client may send back unchanged; they are never written.
const SYSTEM: [&str; 6] = [
    "id",
    "version",
    "created_at",
    "created_by",
    "updated_at",
    "updated_by",
];

/// The code of a warning: what a save tells without refusing.
pub const WARNING: &str = "warning";

/// A record ready to store: scalar values and line items (each line may carry its `id`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prepared {
    pub values: Map<String, Json>,
    pub lines: IndexMap<String, Vec<Map<String, Json>>>,
}

impl Prepared {
    /// A record's values in its API form (line items under their table
    /// field's name) split into scalar values and lines.
    pub fn of_values(entity: &EntityModel, mut values: Map<String, Json>) -> Prepared {
        let mut lines = IndexMap::new();
        for name in entity.lines.keys() {
            if let Some(Json::Array(rows)) = values.remove(name) {
                let rows = rows
                    .into_iter()
                    .filter_map(|r| match r {
                        Json::Object(r) => Some(r),
                        _ => None,
                    })
                    .collect();
                lines.insert(name.clone(), rows);
            }
        }
        Prepared { values, lines }
    }
}

/// The clock and user a preparation runs with.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub actor: &'a Actor,
    pub today: chrono::NaiveDate,
    pub now: chrono::DateTime<chrono::Utc>,
    pub engine: &'a rhai::Engine,
    /// The change comes from the model (a workflow's effects), not a caller:
    /// it may set the state field and read-only fields.
    pub trusted: bool,
    /// How many hooks this write is nested in (a hook's write runs hooks too);
    /// `None` for a hook's own change to its record, which runs none.
    pub hook_depth: Option<u8>,
}

impl Context<'_> {
    fn bindings(&self) -> Bindings<'_> {
        Bindings {
            user: &self.actor.attributes,
            today: self.today,
            now: self.now,
        }
    }
}

/// Prepares a new record (`base` empty) or an update of `base` with `patch`.
pub fn prepare(
    entity: &EntityModel,
    base: &Prepared,
    patch: &Map<String, Json>,
    creating: bool,
    cx: &Context,
) -> Result<Prepared, Vec<FieldError>> {
    prepare_warned(entity, base, patch, creating, cx).map(|(record, _)| record)
}

/// [`prepare`], with the warnings of the record: one per validation rule of
/// level `warning` that does not hold (code `warning`, the rule's field and
/// message). Warnings never refuse.
pub fn prepare_warned(
    entity: &EntityModel,
    base: &Prepared,
    patch: &Map<String, Json>,
    creating: bool,
    cx: &Context,
) -> Result<(Prepared, Vec<FieldError>), Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut out = base.clone();
    let privileged = cx.actor.user_id.is_none() || cx.trusted;
    for (name, input) in patch {
        if SYSTEM.contains(&name.as_str()) {
            continue;
        }
        if let Some(lines) = entity.lines.get(name) {
            match input {
                Json::Array(items) => {
                    let mut rows = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        let Json::Object(item) = item else {
                            errors.push(FieldError::new(
                                &format!("{name}[{i}]"),
                                "type",
                                "expected a line (a mapping)",
                            ));
                            continue;
                        };
                        let mut row = Map::new();
                        for (child, value) in item {
                            let at = format!("{name}[{i}].{child}");
                            if child == "id" {
                                row.insert("id".into(), value.clone());
                                continue;
                            }
                            match lines.fields.get(child) {
                                None => errors.push(FieldError::new(
                                    &at,
                                    "unknown_field",
                                    format!("`{child}` is not a field of {name}"),
                                )),
                                Some(f) if f.def.computed.is_some() => {
                                    errors.push(FieldError::new(&at, "read_only", "computed"))
                                }
                                Some(f) => match coerce(&at, f, value) {
                                    Ok(v) => {
                                        row.insert(child.clone(), v);
                                    }
                                    Err(e) => errors.push(e),
                                },
                            }
                        }
                        rows.push(row);
                    }
                    out.lines.insert(name.clone(), rows);
                }
                Json::Null => {
                    out.lines.insert(name.clone(), Vec::new());
                }
                _ => errors.push(FieldError::new(name, "type", "expected a list of lines")),
            }
            continue;
        }
        let Some(field) = entity.fields.get(name) else {
            errors.push(FieldError::new(
                name,
                "unknown_field",
                format!("`{name}` is not a field of {}", entity.name),
            ));
            continue;
        };
        if entity.state_field.as_deref() == Some(name) && !cx.trusted {
            errors.push(FieldError::new(
                name,
                "read_only",
                "the state changes only through workflow actions",
            ));
            continue;
        }
        if field.def.computed.is_some() || (field.def.read_only && !privileged) {
            errors.push(FieldError::new(
                name,
                "read_only",
                "this field cannot be edited",
            ));
            continue;
        }
        match coerce(name, field, input) {
            Ok(v) => {
                out.values.insert(name.clone(), v);
            }
            Err(e) => errors.push(e),
        }
    }
    if creating {
        for (name, field) in &entity.fields {
            // A malformed value is reported, not silently replaced by the default.
            let malformed = errors.iter().any(|e| e.field == *name);
            if !malformed
                && out.values.get(name).is_none_or(Json::is_null)
                && let Some(default) = &field.def.default
            {
                match default_value(entity, name, field, default, &out, cx) {
                    Ok(v) => {
                        out.values.insert(name.clone(), v);
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        if let (Some(state), Some(initial)) = (&entity.state_field, &entity.initial_state) {
            out.values
                .insert(state.clone(), Json::String(initial.clone()));
        }
    }
    if !errors.is_empty() {
        // Missing values are reported beside malformed ones; computed fields
        // wait for valid input, so they are not judged yet.
        let mut missing = Vec::new();
        check_required(entity, &out, cx, &mut missing);
        let judged = |e: &FieldError| {
            !entity.computed.iter().any(|(n, _)| *n == e.field)
                && !errors.iter().any(|x| x.field == e.field)
        };
        let missing: Vec<FieldError> = missing.into_iter().filter(judged).collect();
        errors.extend(missing);
        return Err(errors);
    }
    line_defaults(entity, &mut out, cx, &mut errors);
    compute_rules(entity, &mut out, cx, &mut errors);
    compute(entity, &mut out, cx, &mut errors);
    check_required(entity, &out, cx, &mut errors);
    let mut warnings = Vec::new();
    validate(entity, &out, cx, &mut errors, &mut warnings);
    if errors.is_empty() {
        Ok((out, warnings))
    } else {
        Err(errors)
    }
}

fn default_value(
    entity: &EntityModel,
    name: &str,
    field: &FieldModel,
    default: &Json,
    record: &Prepared,
    cx: &Context,
) -> Result<Json, FieldError> {
    let value = match default.as_str() {
        Some(expr) if expr.starts_with('=') => {
            let script = entity.default_scripts.get(name).ok_or_else(|| {
                FieldError::new(name, "script", "the default expression did not compile")
            })?;
            let value =
                run(cx.engine, &mut scope_for(entity, record, cx), script).map_err(|e| {
                    FieldError::new(name, "script", format!("default of `{name}`: {e}"))
                })?;
            derived(field, value)
        }
        Some(text) => variable(text, cx).unwrap_or_else(|| default.clone()),
        None => default.clone(),
    };
    coerce(name, field, &value)
}

/// Fills the empty columns of new lines (those without an id yet) from their
/// defaults, as a new record's fields are filled.
fn line_defaults(
    entity: &EntityModel,
    record: &mut Prepared,
    cx: &Context,
    errors: &mut Vec<FieldError>,
) {
    for (table, lines) in &entity.lines {
        if !lines.fields.values().any(|f| f.def.default.is_some()) {
            continue;
        }
        let parent = record_map(entity, record);
        let Some(rows) = record.lines.get_mut(table) else {
            continue;
        };
        for (i, row) in rows.iter_mut().enumerate() {
            if row.get("id").is_some_and(|id| !id.is_null()) {
                continue;
            }
            for (name, field) in &lines.fields {
                let Some(default) = &field.def.default else {
                    continue;
                };
                if row.get(name).is_some_and(|v| !v.is_null()) {
                    continue;
                }
                let at = format!("{table}[{i}].{name}");
                let value = match default.as_str() {
                    Some(expr) if expr.starts_with('=') => {
                        let Some(script) = lines.default_scripts.get(name) else {
                            errors.push(FieldError::new(
                                &at,
                                "script",
                                "the default expression did not compile",
                            ));
                            continue;
                        };
                        let mut scope = line_scope(lines, row, i, &parent, cx);
                        match run(cx.engine, &mut scope, script) {
                            Ok(v) => derived(field, v),
                            Err(message) => {
                                errors.push(FieldError::new(&at, "script", message));
                                continue;
                            }
                        }
                    }
                    Some(text) => variable(text, cx).unwrap_or_else(|| default.clone()),
                    None => default.clone(),
                };
                match coerce(&at, field, &value) {
                    Ok(v) => {
                        row.insert(name.clone(), v);
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
    }
}

/// The scope of a script over one line: its columns, `id`, `position`,
/// `parent`, `user`, `today`, `now`.
fn line_scope(
    lines: &LinesModel,
    row: &Map<String, Json>,
    i: usize,
    parent: &Dynamic,
    cx: &Context,
) -> Scope<'static> {
    let mut scope = Scope::new();
    for (child, f) in &lines.fields {
        scope.push_dynamic(
            child.as_str(),
            dynamic_of(row.get(child).unwrap_or(&Json::Null), f),
        );
    }
    scope.push_dynamic("id", dynamic_of_plain(row.get("id").unwrap_or(&Json::Null)));
    scope.push_dynamic("position", Dynamic::from(i as i64 + 1));
    scope.push_dynamic("parent", parent.clone());
    push_context(&mut scope, cx);
    scope
}

/// Runs computed fields: line computations first, then the record's, in order.
fn compute(
    entity: &EntityModel,
    record: &mut Prepared,
    cx: &Context,
    errors: &mut Vec<FieldError>,
) {
    for (table, lines) in &entity.lines {
        if lines.computed.is_empty() {
            continue;
        }
        let parent = record_map(entity, record);
        let Some(rows) = record.lines.get_mut(table) else {
            continue;
        };
        for (i, row) in rows.iter_mut().enumerate() {
            for (name, script) in &lines.computed {
                let mut scope = line_scope(lines, row, i, &parent, cx);
                let at = format!("{table}[{i}].{name}");
                match run(cx.engine, &mut scope, script) {
                    Ok(v) => {
                        match coerce(&at, &lines.fields[name], &derived(&lines.fields[name], v)) {
                            Ok(v) => {
                                row.insert(name.clone(), v);
                            }
                            Err(e) => errors.push(e),
                        }
                    }
                    Err(message) => errors.push(FieldError::new(&at, "script", message)),
                }
            }
        }
    }
    for (name, script) in &entity.computed {
        let mut scope = scope_for(entity, record, cx);
        match run(cx.engine, &mut scope, script) {
            Ok(v) => match coerce(
                name,
                &entity.fields[name],
                &derived(&entity.fields[name], v),
            ) {
                Ok(v) => {
                    record.values.insert(name.clone(), v);
                }
                Err(e) => errors.push(e),
            },
            Err(message) => errors.push(FieldError::new(
                name,
                "script",
                format!("computing `{name}`: {message}"),
            )),
        }
    }
}

fn check_required(
    entity: &EntityModel,
    record: &Prepared,
    cx: &Context,
    errors: &mut Vec<FieldError>,
) {
    for (name, field) in &entity.fields {
        let empty = match record.values.get(name) {
            None | Some(Json::Null) => true,
            Some(Json::String(s)) => s.trim().is_empty(),
            Some(Json::Array(a)) => a.is_empty(),
            _ => false,
        };
        if !empty || errors.iter().any(|e| e.field == *name) {
            continue;
        }
        let needed = field.def.required
            || field
                .def
                .required_when
                .as_ref()
                .is_some_and(|w| matches(w, entity, &record.values, cx));
        if needed {
            errors.push(FieldError::new(name, "required", "a value is required"));
        }
    }
    for (table, lines) in &entity.lines {
        for (i, row) in record.lines.get(table).into_iter().flatten().enumerate() {
            for (child, f) in &lines.fields {
                if f.def.required && row.get(child).is_none_or(Json::is_null) {
                    errors.push(FieldError::new(
                        &format!("{table}[{i}].{child}"),
                        "required",
                        "a value is required",
                    ));
                }
            }
        }
    }
}

/// `compute` rules: scripts that set fields of `record` on every save, before
/// computed fields and validation. They are pure: the record API belongs to
/// hooks, which run inside the write's transaction.
fn compute_rules(
    entity: &EntityModel,
    out: &mut Prepared,
    cx: &Context,
    errors: &mut Vec<FieldError>,
) {
    for rule in entity.hooks.iter().filter(|h| h.on == RuleEvent::Compute) {
        if let Some(when) = &rule.when
            && !matches(when, entity, &out.values, cx)
        {
            continue;
        }
        let record = record_map(entity, out);
        let before = map_of(record.clone().try_cast().unwrap_or_default());
        let mut scope = Scope::new();
        scope.push_dynamic("record", record);
        for unset in ["old", "action", "comment"] {
            scope.push_dynamic(unset, Dynamic::UNIT);
        }
        push_context(&mut scope, cx);
        let script = &rule.script;
        if let Err(failure) = trellis_engine::script::run(cx.engine, &mut scope, &script.compiled) {
            let code = if failure.kind == FailureKind::Limit {
                "script_limit"
            } else {
                "script"
            };
            let at = script.origin.at(failure.line);
            errors.push(FieldError::new(
                "",
                code,
                format!("{} ({at}): {}", script.name, failure.message),
            ));
            continue;
        }
        let after = scope
            .get_value::<Dynamic>("record")
            .and_then(|r| r.try_cast::<rhai::Map>())
            .map(map_of)
            .unwrap_or_default();
        for (name, value) in after {
            let Some(field) = entity.fields.get(&name) else {
                continue;
            };
            let settable = entity.state_field.as_deref() != Some(name.as_str())
                && field.def.computed.is_none();
            if !settable || before.get(&name) == Some(&value) {
                continue;
            }
            match coerce(&name, field, &value) {
                Ok(v) => {
                    out.values.insert(name, v);
                }
                Err(e) => errors.push(e),
            }
        }
    }
}

/// Validation rules: a rule of level `error` that does not hold (or fails to
/// run) refuses the record; one of level `warning` only adds a warning (code
/// `warning`), also when it fails to run.
fn validate(
    entity: &EntityModel,
    record: &Prepared,
    cx: &Context,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<FieldError>,
) {
    for rule in &entity.validations {
        let mut scope = scope_for(entity, record, cx);
        let field = rule.field.clone().unwrap_or_default();
        match trellis_engine::script::run(cx.engine, &mut scope, &rule.script) {
            Ok(v) if v.as_bool() == Ok(true) => {}
            Ok(_) => {
                let message = rule.message.as_ref().map_or_else(
                    || format!("rule `{}` failed", rule.name),
                    |m| m.text("en").to_owned(),
                );
                if rule.level == RuleLevel::Warning {
                    warnings.push(FieldError::new(&field, WARNING, message));
                } else {
                    errors.push(FieldError::new(&field, "rule", message));
                }
            }
            // The rule is broken or ran away: say which, and where it stopped
            // (as a warning for a rule that only warns: it never refuses).
            Err(failure) => {
                let message = format!(
                    "rule `{}` ({}): {}",
                    rule.name,
                    rule.origin.at(failure.line),
                    failure.message
                );
                let (list, code) = match (rule.level, failure.kind) {
                    (RuleLevel::Warning, _) => (&mut *warnings, WARNING),
                    (_, FailureKind::Limit) => (&mut *errors, "script_limit"),
                    _ => (&mut *errors, "script"),
                };
                list.push(FieldError::new(&field, code, message));
            }
        }
    }
}

fn matches(
    filter: &Filter,
    entity: &EntityModel,
    values: &Map<String, Json>,
    cx: &Context,
) -> bool {
    let scope = FieldsScope::new(entity);
    let Ok(expr) = filter::check(filter, &scope) else {
        return false;
    };
    // Exact numbers are held as text ("12.50"); the filter compares them as
    // numbers only when it sees numbers.
    let mut numeric = values.clone();
    for (name, field) in &entity.fields {
        if matches!(
            field.def.kind,
            FieldType::Decimal | FieldType::Money | FieldType::Percent
        ) && let Some(v) = numeric.get_mut(name)
            && let Some(n) = decimal(v)
                .and_then(|d| rust_decimal::prelude::ToPrimitive::to_f64(&d))
                .and_then(serde_json::Number::from_f64)
        {
            *v = Json::Number(n);
        }
    }
    expr.matches(&numeric, &cx.bindings())
}

/// Whether a record's values match a model filter (conditional uniqueness, `required_when`).
pub fn condition_holds(
    entity: &EntityModel,
    filter: &Filter,
    values: &Map<String, Json>,
    cx: &Context,
) -> bool {
    matches(filter, entity, values, cx)
}

/// A model filter over an entity's own columns as SQL (constant filters only).
pub fn sql_condition(
    entity: &EntityModel,
    filter: &Filter,
    dialect: crate::store::Dialect,
) -> Option<sea_orm::sea_query::Condition> {
    let scope = FieldsScope::new(entity);
    crate::store::filter_sql::compile_with(filter, &scope, &scope, dialect, None).ok()
}

/// Field facts of an entity for checking conditions at run time: its fields and
/// system fields with their types, options and multiplicity, and, when it knows
/// the catalog, the fields of linked records (`customer.region`).
pub struct FieldsScope<'a> {
    entity: &'a EntityModel,
    catalog: Option<&'a crate::catalog::Catalog>,
    /// Fields of `entity` the reader may not see: unknown to their filters.
    hidden: Option<&'a std::collections::HashSet<String>>,
}

impl<'a> FieldsScope<'a> {
    pub fn new(entity: &'a EntityModel) -> Self {
        FieldsScope {
            entity,
            catalog: None,
            hidden: None,
        }
    }

    pub fn with_links(entity: &'a EntityModel, catalog: &'a crate::catalog::Catalog) -> Self {
        FieldsScope {
            entity,
            catalog: Some(catalog),
            hidden: None,
        }
    }

    /// The same scope without these fields of the entity.
    pub fn hiding(mut self, hidden: &'a std::collections::HashSet<String>) -> Self {
        self.hidden = Some(hidden);
        self
    }

    fn hides(&self, name: &str) -> bool {
        self.hidden.is_some_and(|h| h.contains(name))
    }

    /// A field of `entity` (system fields included): its facts and column kind.
    fn own(
        entity: &EntityModel,
        name: &str,
    ) -> Option<(filter::FieldFacts, crate::store::ColumnKind)> {
        if let Some((_, kind)) = crate::read::load::SYSTEM_COLUMNS
            .iter()
            .find(|(n, _)| *n == name)
        {
            let facts_kind = trellis_engine::check::SYSTEM_FIELDS
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(FieldType::Integer, |(_, k)| *k);
            return Some((
                filter::FieldFacts {
                    kind: facts_kind,
                    options: vec![],
                    multiple: false,
                },
                *kind,
            ));
        }
        let f = entity.fields.get(name)?;
        let facts = filter::FieldFacts {
            kind: f.def.kind,
            options: f
                .def
                .options
                .iter()
                .flatten()
                .map(|o| o.value().to_owned())
                .collect(),
            multiple: f.def.multiple,
        };
        Some((facts, f.column))
    }

    /// The linked entity behind a link field.
    fn target(&self, link: &str) -> Option<std::sync::Arc<EntityModel>> {
        let table = self.entity.fields.get(link)?.target_table.as_ref()?;
        self.catalog?.entity_by_table(table)
    }
}

impl filter::FilterScope for FieldsScope<'_> {
    fn field(&self, path: &[String]) -> Result<filter::FieldFacts, filter::FilterError> {
        let unknown = |what: String| filter::FilterError {
            pointer: String::new(),
            kind: filter::FilterErrorKind::UnknownField,
            message: what,
            candidates: vec![],
        };
        match path {
            [name] if self.hides(name) => Err(unknown(format!("unknown field `{name}`"))),
            [link, _] if self.hides(link) => Err(unknown(format!("unknown field `{link}`"))),
            [name] => Self::own(self.entity, name)
                .map(|(f, _)| f)
                .ok_or_else(|| unknown(format!("unknown field `{name}`"))),
            [link, name] => {
                let target = self.target(link).ok_or_else(|| {
                    unknown(format!("`{link}` is not a link that can be followed"))
                })?;
                Self::own(&target, name)
                    .map(|(f, _)| f)
                    .ok_or_else(|| unknown(format!("unknown field `{link}.{name}`")))
            }
            _ => Err(unknown(format!(
                "`{}` follows more than one link",
                path.join(".")
            ))),
        }
    }
    fn user_attribute(&self, _name: &str) -> Option<filter::FieldFacts> {
        Some(filter::FieldFacts {
            kind: FieldType::Text,
            options: vec![],
            multiple: false,
        })
    }
    fn user_attributes(&self) -> Vec<String> {
        vec![]
    }
}

impl crate::store::filter_sql::Columns for FieldsScope<'_> {
    fn column(
        &self,
        path: &[String],
    ) -> Option<(Option<(String, String)>, crate::store::ColumnKind)> {
        match path {
            [name] => Self::own(self.entity, name).map(|(_, k)| (None, k)),
            [link, name] => {
                let target = self.target(link)?;
                Self::own(&target, name)
                    .map(|(_, k)| (Some((link.clone(), target.table.clone())), k))
            }
            _ => None,
        }
    }
}

/// Evaluates a script over a record (workflow guards and effect values), with
/// extra variables such as `split`.
pub(crate) fn evaluate(
    entity: &EntityModel,
    record: &Prepared,
    cx: &Context,
    script: &CompiledScript,
    extra: &[(&str, &Json)],
) -> Result<Json, String> {
    let mut scope = scope_for(entity, record, cx);
    for (name, value) in extra {
        scope.push_dynamic(name.to_string(), dynamic_of_plain(value));
    }
    run(cx.engine, &mut scope, script)
}

/// Evaluates a script over one line of a record's table field: the line's
/// fields as variables, and `parent` for the record.
pub(crate) fn evaluate_line(
    entity: &EntityModel,
    table: &str,
    line: &Map<String, Json>,
    record: &Prepared,
    cx: &Context,
    script: &CompiledScript,
) -> Result<Json, String> {
    let mut scope = Scope::new();
    if let Some(lines) = entity.lines.get(table) {
        for (child, f) in &lines.fields {
            scope.push_dynamic(
                child.as_str(),
                dynamic_of(line.get(child).unwrap_or(&Json::Null), f),
            );
        }
    }
    scope.push_dynamic("parent", record_map(entity, record));
    push_context(&mut scope, cx);
    run(cx.engine, &mut scope, script)
}

/// Runs a script under the sandbox's limits and clock; a failure says what
/// happened and on which line of the script.
fn run(engine: &rhai::Engine, scope: &mut Scope, script: &CompiledScript) -> Result<Json, String> {
    trellis_engine::script::run(engine, scope, script)
        .map(json_of)
        .map_err(|failure| failure.to_string())
}

/// The scope of a script over a record: every field as a variable, plus
/// `record`, `user`, `today` and `now`.
fn scope_for(entity: &EntityModel, record: &Prepared, cx: &Context) -> Scope<'static> {
    let mut scope = Scope::new();
    for (name, field) in &entity.fields {
        scope.push_dynamic(
            name.clone(),
            dynamic_of(record.values.get(name).unwrap_or(&Json::Null), field),
        );
    }
    for (name, lines) in &entity.lines {
        scope.push_dynamic(name.clone(), lines_array(lines, record, name));
    }
    for system in SYSTEM {
        scope.push_dynamic(
            system,
            dynamic_of_plain(record.values.get(system).unwrap_or(&Json::Null)),
        );
    }
    scope.push_dynamic("record", record_map(entity, record));
    push_context(&mut scope, cx);
    scope
}

pub(crate) fn push_context(scope: &mut Scope, cx: &Context) {
    // `user.roles` as in filters' `$user.roles`: a guard may ask for a role.
    let mut attributes = cx.actor.attributes.clone();
    attributes
        .entry("roles")
        .or_insert_with(|| Json::from(cx.actor.roles.clone()));
    let user = rhai::serde::to_dynamic(&attributes).unwrap_or(Dynamic::UNIT);
    scope.push_dynamic("user", user);
    scope.push_dynamic(
        "today",
        Dynamic::from(cx.today.format("%Y-%m-%d").to_string()),
    );
    scope.push_dynamic("now", Dynamic::from(datetime_text(cx.now)));
}

pub(crate) fn record_map(entity: &EntityModel, record: &Prepared) -> Dynamic {
    let mut map = rhai::Map::new();
    for (name, _) in trellis_engine::check::SYSTEM_FIELDS {
        if let Some(value) = record.values.get(name) {
            map.insert(name.into(), dynamic_of_plain(value));
        }
    }
    for (name, field) in &entity.fields {
        map.insert(
            name.as_str().into(),
            dynamic_of(record.values.get(name).unwrap_or(&Json::Null), field),
        );
    }
    for (name, lines) in &entity.lines {
        map.insert(name.as_str().into(), lines_array(lines, record, name));
    }
    Dynamic::from_map(map)
}

/// A table field's lines as the array of line maps scripts see.
fn lines_array(lines: &LinesModel, record: &Prepared, table: &str) -> Dynamic {
    let rows: rhai::Array = record
        .lines
        .get(table)
        .into_iter()
        .flatten()
        .map(|row| line_map(lines, row))
        .collect();
    Dynamic::from_array(rows)
}

/// One line as scripts see it: its `id` (once stored) and its fields typed.
fn line_map(lines: &LinesModel, row: &Map<String, Json>) -> Dynamic {
    let mut map = rhai::Map::new();
    if let Some(id) = row.get("id").filter(|id| !id.is_null()) {
        map.insert("id".into(), dynamic_of_plain(id));
    }
    for (child, f) in &lines.fields {
        map.insert(
            child.as_str().into(),
            dynamic_of(row.get(child).unwrap_or(&Json::Null), f),
        );
    }
    Dynamic::from_map(map)
}

/// A value the model derives (a computed field, an `=expression`) for
/// `field`: exact numbers rounded to the field's scale, half away from zero.
/// Only what people type must already fit the scale.
pub(crate) fn derived(field: &FieldModel, value: Json) -> Json {
    let crate::store::ColumnKind::Exact { scale, .. } = field.column else {
        return value;
    };
    match decimal(&value) {
        Some(d) => Json::String(
            d.round_dp_with_strategy(
                u32::from(scale),
                rust_decimal::RoundingStrategy::MidpointAwayFromZero,
            )
            .normalize()
            .to_string(),
        ),
        None => value,
    }
}

/// A `$variable` value form: `$today` and `$now` (optionally moved:
/// `$today+7d`, `$now-2h`) and `$user.<attribute>`; `None` for anything else.
pub(crate) fn variable(text: &str, cx: &Context) -> Option<Json> {
    if let Some(attr) = text.strip_prefix("$user.") {
        return Some(cx.actor.attributes.get(attr).cloned().unwrap_or(Json::Null));
    }
    let var = text.strip_prefix('$')?;
    let (base, offset) = match var.find(['+', '-']) {
        Some(i) => (&var[..i], &var[i..]),
        None => (var, ""),
    };
    let seconds = match offset.split_at_checked(1) {
        None | Some(("", _)) => 0,
        Some((sign, amount)) => {
            let s = trellis_engine::check::duration_seconds(amount)?;
            if sign == "-" { -s } else { s }
        }
    };
    match base {
        "today" if seconds % 86_400 == 0 => Some(Json::String(
            (cx.today + chrono::Duration::days(seconds / 86_400))
                .format("%Y-%m-%d")
                .to_string(),
        )),
        "now" => Some(Json::String(datetime_text(
            cx.now + chrono::Duration::seconds(seconds),
        ))),
        _ => None,
    }
}

/// A field value as a script sees it: exact numbers as decimals, the rest as is.
fn dynamic_of(value: &Json, field: &FieldModel) -> Dynamic {
    match field.def.kind {
        FieldType::Decimal | FieldType::Money | FieldType::Percent => {
            decimal(value).map_or(Dynamic::UNIT, Dynamic::from)
        }
        _ => dynamic_of_plain(value),
    }
}

pub(crate) fn dynamic_of_plain(value: &Json) -> Dynamic {
    if value.is_null() {
        return Dynamic::UNIT;
    }
    rhai::serde::to_dynamic(value).unwrap_or(Dynamic::UNIT)
}

/// A script's result as JSON, at any depth: decimals become exact strings
/// (serde does not know them, and would drop the whole value).
pub(crate) fn json_of(value: Dynamic) -> Json {
    if value.is_unit() {
        return Json::Null;
    }
    if value.is_array() {
        let items = value.cast::<rhai::Array>();
        return Json::Array(items.into_iter().map(json_of).collect());
    }
    if value.is_map() {
        let map = value.cast::<rhai::Map>();
        return Json::Object(
            map.into_iter()
                .map(|(k, v)| (k.to_string(), json_of(v)))
                .collect(),
        );
    }
    if let Some(d) = value.clone().try_cast::<rust_decimal::Decimal>() {
        return Json::String(d.normalize().to_string());
    }
    rhai::serde::from_dynamic::<Json>(&value).unwrap_or(Json::Null)
}
