//! Checks of `roles.yaml`: role names, user attributes, and every permission's
//! entity, row filter and field rules.

use indexmap::IndexMap;

use super::Ctx;
use super::info::FieldInfo;
use crate::diagnostic::Code;
use crate::load::valid_name;
use crate::model::FieldType;
use crate::source::SourceFile;
use crate::source::{escape, pointer};

pub(super) fn check_roles(ctx: &mut Ctx) {
    let Some(item) = ctx.app.roles.as_ref() else {
        return;
    };
    let file = &*item.file;
    for (name, attribute) in &item.value.user_attributes {
        let at = pointer(["user_attributes", name]);
        if !valid_name(name) {
            ctx.push(file.key_error(
                Code::InvalidName,
                &at,
                format!("`{name}` is not a valid attribute name"),
            ));
        }
        if super::info::USER_BUILTINS.iter().any(|(b, _)| *b == name) {
            ctx.push(file.key_error(
                Code::DuplicateName,
                &at,
                format!("`$user.{name}` is built in"),
            ));
        }
        if attribute.kind == FieldType::Link {
            match &attribute.target {
                Some(target) => {
                    ctx.entity(file, &format!("{at}/target"), target);
                }
                None => ctx.push(file.key_error(
                    Code::MissingKey,
                    &at,
                    "a link attribute needs a `target` entity",
                )),
            }
        }
        if matches!(attribute.kind, FieldType::Table) {
            ctx.push(file.error(
                Code::FieldKindMismatch,
                &format!("{at}/type"),
                "a user attribute cannot be a table",
            ));
        }
    }
    for (role_name, role) in &item.value.roles {
        let at = pointer(["roles", role_name]);
        if !valid_name(role_name) {
            ctx.push(file.key_error(
                Code::InvalidName,
                &at,
                format!("`{role_name}` is not a valid role name"),
            ));
        }
        if role_name == "admin" {
            ctx.push(file.key_error(
                Code::DuplicateName,
                &at,
                "`admin` is built in and may do everything",
            ));
        }
        if ctx
            .ws
            .roles
            .get(role_name)
            .is_some_and(|external| *external != role.external)
        {
            ctx.push(file.key_error(
                Code::InvalidValue,
                &format!("{at}/external"),
                format!("another app declares `{role_name}` with a different `external`"),
            ));
        }
        for (entity_ref, permission) in &role.permissions {
            let pat = format!("{at}/permissions/{}", escape(entity_ref));
            let Some(entity) = ctx.entity(file, &pat, entity_ref) else {
                continue;
            };
            if permission.allow.is_empty() && permission.rows.is_none() {
                ctx.push(
                    file.key_error(
                        Code::MissingKey,
                        &pat,
                        "a permission needs `allow` operations",
                    )
                    .with_help("`allow: [read]`, `allow: [create, read, update]`"),
                );
            }
            if let Some(rows) = &permission.rows {
                ctx.filter(file, &format!("{pat}/rows"), rows, &entity.fields);
            }
            for name in permission.fields.keys() {
                let at = format!("{pat}/fields/{}", escape(name));
                match name.split_once('.') {
                    None => {
                        ctx.field(file, &at, &entity.fields, name, &entity.name);
                    }
                    Some((table, column)) => {
                        line_column(ctx, file, &at, &entity.fields, table, column, &entity.name);
                    }
                }
            }
        }
    }
}

/// A permission's `<table field>.<column>` key: the table field must be a
/// `table` and the column one of its declared columns (a line's `id` and
/// `position` are the platform's and cannot be restricted).
fn line_column(
    ctx: &mut Ctx,
    file: &SourceFile,
    at: &str,
    fields: &IndexMap<String, FieldInfo>,
    table: &str,
    column: &str,
    owner: &str,
) {
    let Some(field) = fields.get(table) else {
        ctx.push(
            file.key_error(Code::UnknownField, at, format!("unknown field `{table}`"))
                .with_label(format!("`{owner}` has no such field"))
                .suggest(table, fields.keys().map(String::as_str)),
        );
        return;
    };
    if field.kind != FieldType::Table {
        ctx.push(
            file.key_error(
                Code::WrongFieldType,
                at,
                format!(
                    "`{table}` is not a table: only line columns are named as `<table>.<column>`"
                ),
            )
            .with_help(format!("restrict the whole field: `{table}: hidden`")),
        );
        return;
    }
    let declared = field.children.iter().filter(|(_, c)| !c.system);
    if !declared.clone().any(|(name, _)| name == column) {
        ctx.push(
            file.key_error(
                Code::UnknownField,
                at,
                format!("unknown column `{column}` of `{table}`"),
            )
            .with_label(format!(
                "the lines of `{owner}.{table}` have no such column"
            ))
            .suggest(column, declared.map(|(name, _)| name.as_str()))
            .with_help_if_none("a line's `id` and `position` cannot be restricted"),
        );
    }
}
