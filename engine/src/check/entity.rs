//! Checks of an entity file: fields, constraints, numbering, tree, form, views, rules, actions.

use std::collections::HashSet;

use indexmap::IndexMap;

use super::info::FieldInfo;
use super::{Ctx, HOOK_VARIABLES};
use crate::diagnostic::Code;
use crate::filter::a_field;
use crate::load::{Item, valid_name};
use crate::model::{Entity, Field, FieldType, RuleEvent, ViewKind};
use crate::source::{SourceFile, pointer};

pub(super) fn check_entity(ctx: &mut Ctx, item: &Item<Entity>) {
    let Some(info) = ctx.ws.entity(&ctx.app_name, &item.name) else {
        return;
    };
    let file = &*item.file;
    let e = &item.value;
    let fields = &info.fields;
    let vars = Ctx::record_variables(fields);

    for (name, field) in &e.fields {
        check_field(
            ctx,
            file,
            &pointer(["fields", name]),
            name,
            field,
            fields,
            &vars,
            &item.name,
        );
    }
    if let Some(title) = &e.title
        && let Some(f) = ctx.field(file, "/title", fields, title, &item.name)
        && !(f.is_textual() || f.kind == FieldType::Select)
    {
        ctx.push(
            file.error(
                Code::WrongFieldType,
                "/title",
                format!("the title field `{title}` is {}", a_field(f.kind)),
            )
            .with_help("a title is a text field"),
        );
    }
    if let Some(numbering) = &e.numbering {
        if let Some(f) = ctx.field(
            file,
            "/numbering/field",
            fields,
            &numbering.field,
            &item.name,
        ) && f.kind != FieldType::Text
        {
            ctx.push(file.error(
                Code::WrongFieldType,
                "/numbering/field",
                format!(
                    "`{}` is {}; numbers go into a text field",
                    numbering.field,
                    a_field(f.kind)
                ),
            ));
        }
        if let Err(why) = numbering_pattern(&numbering.pattern) {
            ctx.push(file.error(Code::NumberingPattern, "/numbering/pattern", format!("invalid numbering pattern: {why}")).with_help("literal text with `{yyyy}`, `{yy}`, `{mm}`, `{dd}` and one `{seq:N}`, e.g. `SO-{yyyy}{mm}{dd}-{seq:4}`"));
        }
    }
    for (i, key) in e.unique.iter().enumerate() {
        let at = format!("/unique/{i}");
        if key.fields.is_empty() {
            ctx.push(file.error(
                Code::MissingKey,
                &format!("{at}/fields"),
                "a unique key needs at least one field",
            ));
        }
        for (j, name) in key.fields.iter().enumerate() {
            let fat = format!("{at}/fields/{j}");
            if let Some(f) = ctx.field(file, &fat, fields, name, &item.name)
                && matches!(
                    f.kind,
                    FieldType::Table
                        | FieldType::Json
                        | FieldType::Attachment
                        | FieldType::LongText
                )
            {
                ctx.push(file.error(
                    Code::WrongFieldType,
                    &fat,
                    format!("{} cannot be part of a unique key", a_field(f.kind)),
                ));
            }
        }
        if let Some(when) = &key.when {
            ctx.filter(file, &format!("{at}/when"), when, fields);
        }
        for (j, name) in key.show.iter().enumerate() {
            let fat = format!("{at}/show/{j}");
            if let Some(f) = ctx.field(file, &fat, fields, name, &item.name)
                && matches!(
                    f.kind,
                    FieldType::Table | FieldType::Json | FieldType::Attachment
                )
            {
                ctx.push(file.error(
                    Code::WrongFieldType,
                    &fat,
                    format!("{} cannot be shown in a duplicate error", a_field(f.kind)),
                ));
            }
        }
    }
    for (i, index) in e.indexes.iter().enumerate() {
        ctx.fields(
            file,
            &format!("/indexes/{i}/fields"),
            fields,
            &index.fields,
            &item.name,
        );
    }
    if let Some(tree) = &e.tree {
        if let Some(f) = ctx.field(file, "/tree/parent", fields, &tree.parent, &item.name) {
            let own = (info.app.clone(), info.name.clone());
            if f.kind != FieldType::Link || f.target.as_ref() != Some(&own) {
                ctx.push(
                    file.error(
                        Code::WrongFieldType,
                        "/tree/parent",
                        format!("`{}` must link to `{}` itself", tree.parent, item.name),
                    )
                    .with_help(format!(
                        "declare `{}: {{type: link, target: {}}}`",
                        tree.parent, item.name
                    )),
                );
            }
        }
        ctx.fields(file, "/tree/inherit", fields, &tree.inherit, &item.name);
    }
    text_fields(ctx, file, "/search", fields, &e.search, &item.name);
    if let Some(form) = &e.form {
        check_form(ctx, file, form, fields, &item.name);
    }
    for (name, view) in &e.views {
        let at = pointer(["views", name]);
        if !valid_name(name) {
            ctx.push(file.key_error(
                Code::InvalidName,
                &at,
                format!("`{name}` is not a valid view name"),
            ));
        }
        ctx.fields(
            file,
            &format!("{at}/columns"),
            fields,
            &view.columns,
            &item.name,
        );
        ctx.fields(
            file,
            &format!("{at}/filters"),
            fields,
            &view.filters,
            &item.name,
        );
        text_fields(
            ctx,
            file,
            &format!("{at}/search"),
            fields,
            &view.search,
            &item.name,
        );
        for (i, sort) in view.sort.iter().enumerate() {
            ctx.field(
                file,
                &format!("{at}/sort/{i}"),
                fields,
                sort.trim_start_matches('-'),
                &item.name,
            );
        }
        if let Some(filter) = &view.filter {
            ctx.filter(file, &format!("{at}/filter"), filter, fields);
        }
        match view.kind {
            ViewKind::Kanban => match &view.group_by {
                None => ctx.push(file.key_error(
                    Code::MissingKey,
                    &at,
                    "a kanban view needs `group_by`",
                )),
                Some(g) => {
                    if let Some(f) =
                        ctx.field(file, &format!("{at}/group_by"), fields, g, &item.name)
                        && !matches!(
                            f.kind,
                            FieldType::Select | FieldType::Link | FieldType::User
                        )
                    {
                        ctx.push(file.error(Code::WrongFieldType, &format!("{at}/group_by"), format!("kanban columns come from a select, link or user field; `{g}` is {}", a_field(f.kind))));
                    }
                }
            },
            ViewKind::Calendar => match &view.date_field {
                None => ctx.push(file.key_error(
                    Code::MissingKey,
                    &at,
                    "a calendar view needs `date_field`",
                )),
                Some(d) => temporal(
                    ctx,
                    file,
                    &format!("{at}/date_field"),
                    fields,
                    d,
                    &item.name,
                ),
            },
            ViewKind::Table => {}
        }
        if let (Some(g), ViewKind::Table | ViewKind::Calendar) = (&view.group_by, view.kind) {
            ctx.field(file, &format!("{at}/group_by"), fields, g, &item.name);
        }
        if let Some(end) = &view.end_field {
            temporal(
                ctx,
                file,
                &format!("{at}/end_field"),
                fields,
                end,
                &item.name,
            );
        }
    }
    let mut rule_names = HashSet::new();
    for (i, rule) in e.rules.iter().enumerate() {
        let at = format!("/rules/{i}");
        if !rule_names.insert(rule.name.as_str()) {
            ctx.push(file.error(
                Code::DuplicateName,
                &format!("{at}/name"),
                format!("a second rule named `{}`", rule.name),
            ));
        }
        let variables: Vec<&str> = match rule.on {
            RuleEvent::Validate => vars.clone(),
            _ => HOOK_VARIABLES.to_vec(),
        };
        ctx.rule_source(
            file,
            &at,
            rule.script.as_ref(),
            rule.file.as_ref(),
            &variables,
        );
        if let Some(when) = &rule.when {
            ctx.filter(file, &format!("{at}/when"), when, fields);
        }
        if rule.on == RuleEvent::Validate && rule.message.is_none() {
            ctx.push(
                file.key_error(Code::MissingKey, &at, "a `validate` rule needs a `message`")
                    .with_label("shown when the rule fails"),
            );
        }
        if let Some(f) = &rule.field {
            ctx.field(file, &format!("{at}/field"), fields, f, &item.name);
        }
        for (j, action) in rule.actions.iter().enumerate() {
            if !info.actions.contains(action) {
                ctx.push(
                    file.error(
                        Code::UnknownName,
                        &format!("{at}/actions/{j}"),
                        format!("unknown action `{action}`"),
                    )
                    .suggest(action, info.actions.iter().map(String::as_str)),
                );
            }
        }
        if !rule.actions.is_empty() && rule.on != RuleEvent::Transition {
            ctx.push(file.key_error(
                Code::InvalidValue,
                &format!("{at}/actions"),
                "`actions` applies only to `on: transition` rules",
            ));
        }
    }
    for (i, action) in e.actions.iter().enumerate() {
        let at = format!("/actions/{i}");
        if action.from.is_some() || action.to.is_some() {
            ctx.push(file.key_error(
                Code::InvalidValue,
                &format!("{at}/{}", if action.from.is_some() { "from" } else { "to" }),
                "entity actions keep the state; state changes belong in a workflow's transitions",
            ));
        }
        super::workflow::check_action(ctx, file, &at, action, info);
    }
    let mut seen = HashSet::new();
    for (i, action) in e.actions.iter().enumerate() {
        if !seen.insert(action.action.as_str()) {
            ctx.push(file.error(
                Code::DuplicateName,
                &format!("/actions/{i}/action"),
                format!("a second action named `{}`", action.action),
            ));
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_field(
    ctx: &mut Ctx,
    file: &SourceFile,
    at: &str,
    name: &str,
    field: &Field,
    siblings: &IndexMap<String, FieldInfo>,
    vars: &[&str],
    owner: &str,
) {
    if !valid_name(name) {
        ctx.push(
            file.key_error(
                Code::InvalidName,
                at,
                format!("`{name}` is not a valid field name"),
            )
            .with_help("field names are lowercase letters, digits and `_`, starting with a letter"),
        );
    } else if super::SYSTEM_FIELDS.iter().any(|(s, _)| *s == name)
        || name == "position" && siblings.contains_key("position") && siblings["position"].system
    {
        ctx.push(file.key_error(Code::InvalidName, at, format!("`{name}` is a system field")).with_help("every record has id, version, created_at, created_by, updated_at and updated_by"));
    }
    let kind = field.kind;
    let only = |ctx: &mut Ctx, present: bool, key: &str, fits: bool, types: &str| {
        if present && !fits {
            ctx.push(
                file.key_error(
                    Code::FieldKindMismatch,
                    &format!("{at}/{key}"),
                    format!("`{key}` does not apply to {}", a_field(kind)),
                )
                .with_help(format!("`{key}` applies to {types} fields")),
            );
        }
    };
    let numeric = matches!(
        kind,
        FieldType::Integer | FieldType::Decimal | FieldType::Money | FieldType::Percent
    );
    let exact = matches!(
        kind,
        FieldType::Decimal | FieldType::Money | FieldType::Percent
    );
    let textual = matches!(
        kind,
        FieldType::Text
            | FieldType::LongText
            | FieldType::Email
            | FieldType::Phone
            | FieldType::Url
    );
    let select = matches!(kind, FieldType::Select | FieldType::MultiSelect);
    let links = kind == FieldType::Link;
    let numbers = "integer, decimal, money and percent";
    let exacts = "decimal, money and percent";
    let several = matches!(
        kind,
        FieldType::Link | FieldType::User | FieldType::Attachment
    );
    let scalar = !matches!(
        kind,
        FieldType::Table | FieldType::Json | FieldType::Attachment
    );
    // Which keys apply to which field types: (key given, key, fits this type, the types it fits).
    let applicability = [
        (field.target.is_some(), "target", links, "link"),
        (field.link_filter.is_some(), "link_filter", links, "link"),
        (field.on_delete.is_some(), "on_delete", links, "link"),
        (
            field.options.is_some(),
            "options",
            select,
            "select and multi_select",
        ),
        (
            field.fields.is_some(),
            "fields",
            kind == FieldType::Table,
            "table",
        ),
        (field.min.is_some(), "min", numeric, numbers),
        (field.max.is_some(), "max", numeric, numbers),
        (field.precision.is_some(), "precision", exact, exacts),
        (field.scale.is_some(), "scale", exact, exacts),
        (
            field.currency.is_some(),
            "currency",
            kind == FieldType::Money,
            "money",
        ),
        (field.min_length.is_some(), "min_length", textual, "text"),
        (field.max_length.is_some(), "max_length", textual, "text"),
        (field.pattern.is_some(), "pattern", textual, "text"),
        (
            field.multiple,
            "multiple",
            several,
            "link, user and attachment",
        ),
        (field.unique, "unique", scalar, "scalar"),
    ];
    for (present, key, fits, types) in applicability {
        only(ctx, present, key, fits, types);
    }

    if kind == FieldType::Link {
        match &field.target {
            None => ctx.push(
                file.key_error(Code::MissingKey, at, "a link field needs a `target` entity")
                    .with_label("link to what?"),
            ),
            Some(target) => {
                if let Some(target_info) = ctx.entity(file, &format!("{at}/target"), target)
                    && let Some(filter) = &field.link_filter
                {
                    ctx.filter(
                        file,
                        &format!("{at}/link_filter"),
                        filter,
                        &target_info.fields,
                    );
                }
            }
        }
    }
    if select {
        match &field.options {
            None => ctx.push(file.key_error(
                Code::MissingKey,
                at,
                format!("{} needs `options`", a_field(kind)),
            )),
            Some(options) => {
                let mut seen = HashSet::new();
                for (i, option) in options.iter().enumerate() {
                    let v = option.value();
                    let oat = format!("{at}/options/{i}");
                    if !seen.insert(v) {
                        ctx.push(file.error(
                            Code::DuplicateName,
                            &oat,
                            format!("option `{v}` appears twice"),
                        ));
                    }
                    if v.is_empty()
                        || !v
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        ctx.push(file.error(Code::InvalidName, &oat, format!("`{v}` is not a valid option value")).with_help("option values are letters, digits, `_` and `-`; put display text in `label`"));
                    }
                }
            }
        }
    }
    if let (Some(min), Some(max)) = (field.min, field.max)
        && min > max
    {
        ctx.push(file.error(
            Code::InvalidValue,
            &format!("{at}/min"),
            format!("`min` ({min}) is above `max` ({max})"),
        ));
    }
    if let Some(pattern) = &field.pattern
        && let Err(e) = regex::Regex::new(pattern)
    {
        let why = e.to_string().lines().last().unwrap_or_default().to_owned();
        ctx.push(file.error(
            Code::Regex,
            &format!("{at}/pattern"),
            format!(
                "invalid regular expression: {}",
                why.trim_start_matches("error: ")
            ),
        ));
    }
    let info = siblings.get(name);
    if kind == FieldType::Table {
        match (&field.fields, info) {
            (None, _) => ctx.push(file.key_error(
                Code::MissingKey,
                at,
                "a table field needs `fields` (its columns)",
            )),
            (Some(children), Some(info)) => {
                let line_vars: Vec<&str> = info
                    .children
                    .keys()
                    .map(String::as_str)
                    .chain(["parent", "user", "today", "now"])
                    .collect();
                for (child_name, child) in children {
                    if child.kind == FieldType::Table {
                        ctx.push(file.error(
                            Code::FieldKindMismatch,
                            &format!("{at}/fields/{child_name}/type"),
                            "a table cannot hold another table",
                        ));
                        continue;
                    }
                    check_field(
                        ctx,
                        file,
                        &format!("{at}/fields/{}", crate::source::escape(child_name)),
                        child_name,
                        child,
                        &info.children,
                        &line_vars,
                        &format!("{owner}.{name}"),
                    );
                }
            }
            _ => {}
        }
    }
    let Some(info) = info else { return };
    if let Some(default) = &field.default {
        ctx.value(file, &format!("{at}/default"), default, info, name, vars);
    }
    if let Some(computed) = &field.computed {
        ctx.inline_script(file, &format!("{at}/computed"), computed, 0, vars);
        if field.default.is_some() {
            ctx.push(file.key_error(
                Code::InvalidValue,
                &format!("{at}/default"),
                "a computed field takes no `default`",
            ));
        }
    }
    for key in ["required_when", "read_only_when", "visible_when"] {
        let filter = match key {
            "required_when" => &field.required_when,
            "read_only_when" => &field.read_only_when,
            _ => &field.visible_when,
        };
        if let Some(filter) = filter {
            ctx.filter(file, &format!("{at}/{key}"), filter, siblings);
        }
    }
}

fn check_form(
    ctx: &mut Ctx,
    file: &SourceFile,
    form: &crate::model::Form,
    fields: &IndexMap<String, FieldInfo>,
    owner: &str,
) {
    if !form.sections.is_empty() && !form.tabs.is_empty() {
        ctx.push(
            file.key_error(
                Code::InvalidValue,
                "/form/tabs",
                "a form has `sections` or `tabs`, not both",
            )
            .with_help("put the loose sections into a tab"),
        );
    }
    let mut placed: HashSet<&str> = HashSet::new();
    let sections = form
        .sections
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("/form/sections/{i}"), s));
    let tabbed = form.tabs.iter().enumerate().flat_map(|(t, tab)| {
        tab.sections
            .iter()
            .enumerate()
            .map(move |(i, s)| (format!("/form/tabs/{t}/sections/{i}"), s))
    });
    for (at, section) in sections.chain(tabbed) {
        for (j, name) in section.fields.iter().enumerate() {
            let fat = format!("{at}/fields/{j}");
            if ctx.field(file, &fat, fields, name, owner).is_some() && !placed.insert(name.as_str())
            {
                ctx.push(file.error(
                    Code::DuplicateName,
                    &fat,
                    format!("`{name}` is already placed on the form"),
                ));
            }
        }
        if let Some(filter) = &section.visible_when {
            ctx.filter(file, &format!("{at}/visible_when"), filter, fields);
        }
    }
}

fn text_fields(
    ctx: &mut Ctx,
    file: &SourceFile,
    at: &str,
    fields: &IndexMap<String, FieldInfo>,
    names: &[String],
    owner: &str,
) {
    for (i, name) in names.iter().enumerate() {
        let fat = format!("{at}/{i}");
        if let Some(f) = ctx.field(file, &fat, fields, name, owner)
            && !f.is_textual()
        {
            ctx.push(file.error(
                Code::WrongFieldType,
                &fat,
                format!(
                    "quick search covers text fields; `{name}` is {}",
                    a_field(f.kind)
                ),
            ));
        }
    }
}

fn temporal(
    ctx: &mut Ctx,
    file: &SourceFile,
    at: &str,
    fields: &IndexMap<String, FieldInfo>,
    name: &str,
    owner: &str,
) {
    if let Some(f) = ctx.field(file, at, fields, name, owner)
        && !f.is_temporal()
    {
        ctx.push(file.error(
            Code::WrongFieldType,
            at,
            format!("`{name}` is {}, not a date or datetime", a_field(f.kind)),
        ));
    }
}

/// Checks a numbering pattern; `Err` says what is wrong.
pub fn numbering_pattern(pattern: &str) -> Result<(), String> {
    let mut seqs = 0;
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Err("a `{` is not closed".into());
        };
        let token = &rest[open + 1..open + close];
        match token {
            "yyyy" | "yy" | "mm" | "dd" => {}
            t if t.starts_with("seq:") => {
                let digits: u32 = t[4..]
                    .parse()
                    .map_err(|_| format!("`{{{t}}}` needs a number of digits, like `{{seq:4}}`"))?;
                if !(1..=12).contains(&digits) {
                    return Err(format!("`{{{t}}}`: between 1 and 12 digits"));
                }
                seqs += 1;
            }
            t => return Err(format!("unknown part `{{{t}}}`")),
        }
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err("a `}` without a `{`".into());
    }
    match seqs {
        1 => Ok(()),
        0 => Err("it has no `{seq:N}` counter".into()),
        _ => Err("it has more than one `{seq:N}` counter".into()),
    }
}
