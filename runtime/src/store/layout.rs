//! The database layout a checked model needs: one table per entity, one per
//! table field (line items), typed columns, the system columns every record
//! has, and the indexes its uniqueness rules, links and declared indexes call for.
//!
//! A layout is plain data: it is stored with each deployment, and the next
//! deployment is planned by comparing layouts, not by guessing from the live database.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use trellis_engine::CheckedModel;
use trellis_engine::model::{Field, FieldType};

/// PostgreSQL truncates longer identifiers; we refuse them instead.
pub const MAX_IDENTIFIER: usize = 63;

/// The kind of a column, independent of the dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ColumnKind {
    /// The primary key.
    Id,
    Integer,
    Text,
    Boolean,
    Date,
    DateTime,
    /// An exact number: money, percent, decimal.
    Exact {
        precision: u8,
        scale: u8,
    },
    Json,
}

/// A column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub kind: ColumnKind,
    pub nullable: bool,
}

/// An index; `condition` (a filter of the model, literals only) makes it partial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableIndex {
    pub columns: Vec<String>,
    pub unique: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub columns: IndexMap<String, Column>,
    /// Index name → index.
    pub indexes: BTreeMap<String, TableIndex>,
    /// For line-item tables: the table whose records own the rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// Every table of a deployment, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    pub tables: BTreeMap<String, Table>,
}

/// A model that cannot be laid out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "the table name `{0}` is longer than {MAX_IDENTIFIER} bytes; shorten the app, entity or field name"
    )]
    NameTooLong(String),
}

/// The table of an entity.
pub fn entity_table(app: &str, entity: &str) -> String {
    format!("{app}__{entity}")
}

/// The table of a line-item field.
pub fn lines_table(app: &str, entity: &str, field: &str) -> String {
    format!("{app}__{entity}__{field}")
}

impl Layout {
    /// The layout of every app of a checked model.
    pub fn of_model(model: &CheckedModel) -> Result<Layout, LayoutError> {
        let mut layout = Layout::default();
        for app in model.apps() {
            let app_name = app.name();
            for (entity_name, item) in &app.entities {
                let entity = &item.value;
                let name = entity_table(&app_name, entity_name);
                let mut table = Table::record();
                for (field_name, field) in &entity.fields {
                    if field.kind == FieldType::Table {
                        let lines = lines_table(&app_name, entity_name, field_name);
                        let table = Table::lines(&lines, &name, field);
                        layout.add(lines, table)?;
                        continue;
                    }
                    table.columns.insert(field_name.clone(), column_of(field));
                    let single_reference =
                        matches!(field.kind, FieldType::Link | FieldType::User) && !field.multiple;
                    if field.unique {
                        table.index(&name, &[field_name.as_str()], true, None);
                    } else if field.index || single_reference {
                        table.index(&name, &[field_name.as_str()], false, None);
                    }
                }
                if let Some(workflow) = app
                    .workflows
                    .values()
                    .find(|w| w.value.entity == *entity_name)
                {
                    let state = &workflow.value.field;
                    table.columns.insert(
                        state.clone(),
                        Column {
                            kind: ColumnKind::Text,
                            nullable: true,
                        },
                    );
                    table.index(&name, &[state.as_str()], false, None);
                }
                for key in &entity.unique {
                    let columns: Vec<&str> = key.fields.iter().map(String::as_str).collect();
                    // A normalised key compares trimmed lower-case text, which a plain
                    // index cannot; the write transaction enforces it, helped by this index.
                    let unique =
                        !key.normalize && key.when.as_ref().is_none_or(|w| !has_variables(&w.0));
                    table.index(
                        &name,
                        &columns,
                        unique,
                        key.when.as_ref().map(|w| w.0.clone()),
                    );
                }
                for index in &entity.indexes {
                    let columns: Vec<&str> = index.fields.iter().map(String::as_str).collect();
                    table.index(&name, &columns, false, None);
                }
                layout.add(name, table)?;
            }
        }
        Ok(layout)
    }

    fn add(&mut self, name: String, table: Table) -> Result<(), LayoutError> {
        if name.len() > MAX_IDENTIFIER {
            return Err(LayoutError::NameTooLong(name));
        }
        self.tables.insert(name, table);
        Ok(())
    }
}

impl Table {
    /// A table without columns.
    pub fn empty() -> Table {
        Table {
            columns: IndexMap::new(),
            indexes: BTreeMap::new(),
            parent: None,
        }
    }

    /// A record table with its system columns.
    fn record() -> Table {
        let mut columns = IndexMap::new();
        let system = [
            ("id", ColumnKind::Id, false),
            ("version", ColumnKind::Integer, false),
            ("created_at", ColumnKind::DateTime, false),
            ("created_by", ColumnKind::Integer, true),
            ("updated_at", ColumnKind::DateTime, false),
            ("updated_by", ColumnKind::Integer, true),
        ];
        for (name, kind, nullable) in system {
            columns.insert(name.to_owned(), Column { kind, nullable });
        }
        Table {
            columns,
            indexes: BTreeMap::new(),
            parent: None,
        }
    }

    /// A line-item table: its rows belong to a record of `parent`.
    fn lines(name: &str, parent: &str, field: &Field) -> Table {
        let mut columns = IndexMap::new();
        columns.insert(
            "id".to_owned(),
            Column {
                kind: ColumnKind::Id,
                nullable: false,
            },
        );
        columns.insert(
            "parent_id".to_owned(),
            Column {
                kind: ColumnKind::Integer,
                nullable: false,
            },
        );
        columns.insert(
            "position".to_owned(),
            Column {
                kind: ColumnKind::Integer,
                nullable: false,
            },
        );
        for (name, child) in field.fields.iter().flatten() {
            columns.insert(name.clone(), column_of(child));
        }
        let mut table = Table {
            columns,
            indexes: BTreeMap::new(),
            parent: Some(parent.to_owned()),
        };
        table.index(name, &["parent_id", "position"], false, None);
        table
    }

    fn index(
        &mut self,
        table: &str,
        columns: &[&str],
        unique: bool,
        condition: Option<serde_json::Map<String, serde_json::Value>>,
    ) {
        let suffix = if unique { "key" } else { "idx" };
        let name = index_name(table, columns, suffix);
        let mut columns: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
        // Lists end their order with `id`, so a page filtered on an index's
        // columns (a row filter's `owner`, a status) is read from the index in
        // order instead of sorting every match. SQLite indexes carry the id
        // anyway; PostgreSQL's need it spelled out.
        if !unique && !columns.iter().any(|c| c == "id") {
            columns.push("id".to_owned());
        }
        self.indexes.insert(
            name,
            TableIndex {
                columns,
                unique,
                condition,
            },
        );
    }
}

/// `table__col1_col2_key`, shortened with a stable hash when too long.
fn index_name(table: &str, columns: &[&str], suffix: &str) -> String {
    let full = format!("{table}__{}_{suffix}", columns.join("_"));
    if full.len() <= MAX_IDENTIFIER {
        return full;
    }
    // FNV-1a: stable across runs and platforms, unlike the std hasher.
    let hash = full.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let keep = MAX_IDENTIFIER - 1 - 8 - 1 - suffix.len();
    let mut cut = keep;
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{:08x}_{suffix}", &full[..cut], hash as u32)
}

/// The column a field is stored in.
pub fn column_of(field: &Field) -> Column {
    let exact = |p: u8, s: u8| ColumnKind::Exact {
        precision: field.precision.unwrap_or(p),
        scale: field.scale.unwrap_or(s),
    };
    let kind = match field.kind {
        FieldType::Text
        | FieldType::LongText
        | FieldType::Email
        | FieldType::Phone
        | FieldType::Url
        | FieldType::Select => ColumnKind::Text,
        FieldType::Integer => ColumnKind::Integer,
        FieldType::Boolean => ColumnKind::Boolean,
        FieldType::Date => ColumnKind::Date,
        FieldType::Datetime => ColumnKind::DateTime,
        FieldType::Money | FieldType::Percent => exact(18, 2),
        FieldType::Decimal => exact(18, 4),
        FieldType::Link | FieldType::User if !field.multiple => ColumnKind::Integer,
        FieldType::Link
        | FieldType::User
        | FieldType::MultiSelect
        | FieldType::Attachment
        | FieldType::Json
        | FieldType::Table => ColumnKind::Json,
    };
    Column {
        kind,
        nullable: true,
    }
}

fn has_variables(filter: &serde_json::Map<String, serde_json::Value>) -> bool {
    fn walk(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::String(s) => s.starts_with('$'),
            serde_json::Value::Array(items) => items.iter().any(walk),
            serde_json::Value::Object(map) => map.values().any(walk),
            _ => false,
        }
    }
    filter.values().any(walk)
}

#[cfg(test)]
mod tests {
    use super::index_name;

    #[test]
    fn long_index_names_are_shortened_stably() {
        let long = "a_rather_long_app_name__a_rather_long_entity_name";
        let name = index_name(long, &["first_field", "second_field"], "key");
        assert!(name.len() <= super::MAX_IDENTIFIER, "{name}");
        assert_eq!(
            name,
            index_name(long, &["first_field", "second_field"], "key")
        );
        assert_ne!(
            name,
            index_name(long, &["first_field", "third_field"], "key")
        );
        assert_eq!(
            index_name("crm__customer", &["code"], "key"),
            "crm__customer__code_key"
        );
    }
}
