//! Checks of a dashboard: widgets' entities, measures, groupings, filters, linkage.

use std::collections::HashSet;

use super::Ctx;
use crate::diagnostic::Code;
use crate::filter::a_field;
use crate::load::{Item, valid_name};
use crate::model::{Dashboard, FieldType, WidgetKind};

/// The date buckets a grouping may use.
pub const BUCKETS: [&str; 5] = ["day", "week", "month", "quarter", "year"];

pub(super) fn check_dashboard(ctx: &mut Ctx, item: &Item<Dashboard>) {
    let file = &*item.file;
    let d = &item.value;
    ctx.roles(file, "/roles", &d.roles);
    let mut names = HashSet::new();
    let mut entities = Vec::new();
    for (i, w) in d.widgets.iter().enumerate() {
        let at = format!("/widgets/{i}");
        if !valid_name(&w.name) {
            ctx.push(file.error(
                Code::InvalidName,
                &format!("{at}/name"),
                format!("`{}` is not a valid widget name", w.name),
            ));
        }
        if !names.insert(w.name.as_str()) {
            ctx.push(file.error(
                Code::DuplicateName,
                &format!("{at}/name"),
                format!("a second widget named `{}`", w.name),
            ));
        }
        let Some(entity) = ctx.entity(file, &format!("{at}/entity"), &w.entity) else {
            continue;
        };
        entities.push(entity);
        let fields = &entity.fields;
        let mat = format!("{at}/measure");
        match w.measure.split_once(':') {
            None if w.measure == "count" => {}
            None if w.measure == "percent" => {
                if w.percent_of.is_none() {
                    ctx.push(file.error(Code::Measure, &mat, "`percent` needs `percent_of`: the records counted against all").with_help("`percent_of: {type: praise}`"));
                }
            }
            Some((op @ ("sum" | "avg" | "min" | "max" | "count_distinct"), field)) => {
                if let Some(f) = ctx.field(file, &mat, fields, field, &entity.name) {
                    let fits = match op {
                        "sum" | "avg" => f.is_numeric(),
                        "min" | "max" => f.is_numeric() || f.is_temporal(),
                        _ => !matches!(f.kind, FieldType::Table | FieldType::Json),
                    };
                    if !fits {
                        ctx.push(file.error(Code::Measure, &mat, format!("`{op}` does not apply to `{field}`, {}", a_field(f.kind))));
                    }
                }
            }
            _ => ctx.push(file.error(Code::Measure, &mat, format!("unknown measure `{}`", w.measure)).with_help("`count`, `percent`, or `sum:`, `avg:`, `min:`, `max:`, `count_distinct:` and a field")),
        }
        if w.percent_of.is_some() && w.measure != "percent" {
            ctx.push(file.key_error(
                Code::Measure,
                &format!("{at}/percent_of"),
                "`percent_of` goes with `measure: percent`",
            ));
        }
        if let Some(f) = &w.percent_of {
            ctx.filter(file, &format!("{at}/percent_of"), f, fields);
        }
        if w.group_by.len() > 2 {
            ctx.push(file.error(
                Code::Measure,
                &format!("{at}/group_by"),
                "group by at most two fields",
            ));
        }
        for (j, group) in w.group_by.iter().enumerate() {
            let gat = format!("{at}/group_by/{j}");
            let (name, bucket) = match group.split_once(':') {
                Some((n, b)) => (n, Some(b)),
                None => (group.as_str(), None),
            };
            let Some(f) = ctx.field(file, &gat, fields, name, &entity.name) else {
                continue;
            };
            match bucket {
                Some(b) if !f.is_temporal() => ctx.push(file.error(
                    Code::Measure,
                    &gat,
                    format!(
                        "`{name}` is {}; only dates take a bucket like `:{b}`",
                        a_field(f.kind)
                    ),
                )),
                Some(b) if !BUCKETS.contains(&b) => ctx.push(
                    file.error(Code::Measure, &gat, format!("unknown date bucket `{b}`"))
                        .suggest(b, BUCKETS),
                ),
                _ if matches!(
                    f.kind,
                    FieldType::Table | FieldType::Json | FieldType::LongText
                ) =>
                {
                    ctx.push(file.error(
                        Code::Measure,
                        &gat,
                        format!("cannot group by {}", a_field(f.kind)),
                    ))
                }
                _ => {}
            }
        }
        if matches!(
            w.kind,
            WidgetKind::Bar | WidgetKind::Line | WidgetKind::Pie | WidgetKind::Funnel
        ) && w.group_by.is_empty()
        {
            ctx.push(file.key_error(Code::MissingKey, &at, "a chart needs `group_by`"));
        }
        if let Some(filter) = &w.filter {
            ctx.filter(file, &format!("{at}/filter"), filter, fields);
        }
        ctx.fields(
            file,
            &format!("{at}/columns"),
            fields,
            &w.columns,
            &entity.name,
        );
        if let Some(sort) = &w.sort {
            let key = sort.trim_start_matches('-');
            let grouped = w.group_by.iter().any(|g| g.split(':').next() == Some(key));
            if key != "value" && !grouped {
                ctx.push(file.error(
                    Code::Measure,
                    &format!("{at}/sort"),
                    format!("sort by `value` or a group field, not `{key}`"),
                ));
            }
        }
        if w.linked && w.group_by.is_empty() {
            ctx.push(file.key_error(
                Code::Measure,
                &format!("{at}/linked"),
                "a linked widget filters the others by its group; give it `group_by`",
            ));
        }
    }
    for (i, filter) in d.filters.iter().enumerate() {
        let at = format!("/filters/{i}/field");
        let found = entities
            .iter()
            .any(|e| e.fields.contains_key(&filter.field));
        if !found && !entities.is_empty() {
            let known: Vec<&str> = entities.iter().flat_map(|e| e.field_names()).collect();
            ctx.push(
                file.error(
                    Code::UnknownField,
                    &at,
                    format!("no widget's entity has a field `{}`", filter.field),
                )
                .suggest(&filter.field, known),
            );
        }
    }
}
