//! The schema planner: from the deployed layout and the wanted one, an ordered
//! list of steps, each with the SQL it runs. Removing a field or an entity keeps
//! its column or table and the data in it unless destructive steps are allowed.

use std::fmt;

use sea_orm::sea_query::{
    Alias, ConditionalStatement, ForeignKey, ForeignKeyAction, Index, Table as SqlTable,
};
use serde::Serialize;

use crate::store::filter_sql;
use crate::store::{Column, Dialect, Layout, Table, TableIndex};

/// Whether a step can lose data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Adds structure; no data is touched.
    Safe,
    /// Nothing runs: the column or table stays, with its data.
    Keep,
    /// Drops data; only planned when destructive steps are allowed.
    Destructive,
    /// A change Trellis cannot make yet; deploying refuses the plan.
    Unsupported,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub kind: StepKind,
    pub description: String,
    pub sql: Vec<String>,
}

/// The steps from one layout to another, for one dialect, and the layout that
/// results (the wanted one plus everything kept).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SchemaPlan {
    pub steps: Vec<Step>,
    #[serde(skip)]
    pub target: Layout,
}

impl SchemaPlan {
    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.steps
            .iter()
            .all(|s| s.sql.is_empty() && s.kind != StepKind::Unsupported)
    }
}

impl fmt::Display for SchemaPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return writeln!(f, "the database is up to date");
        }
        for (i, step) in self.steps.iter().enumerate() {
            let tag = match step.kind {
                StepKind::Safe => "",
                StepKind::Keep => " [kept]",
                StepKind::Destructive => " [destructive]",
                StepKind::Unsupported => " [unsupported]",
            };
            writeln!(f, "{}. {}{tag}", i + 1, step.description)?;
            for sql in &step.sql {
                writeln!(f, "     {sql};")?;
            }
        }
        Ok(())
    }
}

/// Plans the way from `current` to `wanted`.
pub fn plan(
    current: &Layout,
    wanted: &Layout,
    dialect: Dialect,
    allow_destructive: bool,
) -> SchemaPlan {
    let mut steps = Vec::new();
    let mut target = wanted.clone();
    // Indexes go before the columns and tables they cover, and come back after.
    for (name, old) in &current.tables {
        let new = wanted.tables.get(name);
        for (index_name, index) in &old.indexes {
            let kept = new.and_then(|t| t.indexes.get(index_name));
            if kept != Some(index) {
                steps.push(Step {
                    kind: StepKind::Safe,
                    description: format!("drop index {index_name} on {name}"),
                    // Both dialects accept the bare form; index names are unique per schema.
                    sql: vec![format!(
                        "DROP INDEX \"{}\"",
                        index_name.replace('"', "\"\"")
                    )],
                });
            }
        }
    }
    for (name, table) in &wanted.tables {
        match current.tables.get(name) {
            None => steps.push(Step {
                kind: StepKind::Safe,
                description: format!("create table {name}"),
                sql: vec![create_table(name, table, dialect)],
            }),
            Some(old) => {
                for (column, def) in &table.columns {
                    match old.columns.get(column) {
                        None => steps.push(Step {
                            kind: StepKind::Safe,
                            description: format!("add column {name}.{column}"),
                            sql: vec![add_column(name, column, def, dialect)],
                        }),
                        Some(was) if was.kind != def.kind => steps.push(Step {
                            kind: StepKind::Unsupported,
                            description: format!(
                                "column {name}.{column} changes from {:?} to {:?}; changing a stored type is not supported yet: add a new field instead",
                                was.kind, def.kind
                            ),
                            sql: Vec::new(),
                        }),
                        Some(_) => {}
                    }
                }
                for (column, def) in &old.columns {
                    if table.columns.contains_key(column) {
                        continue;
                    }
                    if allow_destructive {
                        steps.push(Step {
                            kind: StepKind::Destructive,
                            description: format!("drop column {name}.{column} and its data"),
                            sql: vec![
                                dialect.render(
                                    SqlTable::alter()
                                        .table(Alias::new(name.as_str()))
                                        .drop_column(Alias::new(column.as_str())),
                                ),
                            ],
                        });
                    } else {
                        steps.push(Step {
                            kind: StepKind::Keep,
                            description: format!(
                                "keep column {name}.{column}: the field was removed, its data stays"
                            ),
                            sql: Vec::new(),
                        });
                        if let Some(t) = target.tables.get_mut(name) {
                            t.columns.insert(
                                column.clone(),
                                Column {
                                    nullable: true,
                                    ..def.clone()
                                },
                            );
                        }
                    }
                }
            }
        }
    }
    for (name, old) in &current.tables {
        if wanted.tables.contains_key(name) {
            continue;
        }
        if allow_destructive {
            steps.push(Step {
                kind: StepKind::Destructive,
                description: format!("drop table {name} and its data"),
                sql: vec![dialect.render(SqlTable::drop().table(Alias::new(name.as_str())))],
            });
        } else {
            steps.push(Step {
                kind: StepKind::Keep,
                description: format!("keep table {name}: the entity was removed, its data stays"),
                sql: Vec::new(),
            });
            let mut kept = old.clone();
            kept.indexes.clear();
            target.tables.insert(name.clone(), kept);
        }
    }
    for (name, table) in &wanted.tables {
        let old = current.tables.get(name);
        for (index_name, index) in &table.indexes {
            if old.and_then(|t| t.indexes.get(index_name)) != Some(index) {
                steps.push(create_index(name, table, index_name, index, dialect));
            }
        }
    }
    SchemaPlan { steps, target }
}

fn create_table(name: &str, table: &Table, dialect: Dialect) -> String {
    let mut stmt = SqlTable::create();
    stmt.table(Alias::new(name));
    for (column, def) in &table.columns {
        stmt.col(dialect.column(column, def.kind, def.nullable));
    }
    if let Some(parent) = &table.parent {
        // Line items live and die with their record.
        stmt.foreign_key(
            ForeignKey::create()
                .from(Alias::new(name), Alias::new("parent_id"))
                .to(Alias::new(parent.as_str()), Alias::new("id"))
                .on_delete(ForeignKeyAction::Cascade),
        );
    }
    dialect.render(&stmt)
}

fn add_column(table: &str, column: &str, def: &Column, dialect: Dialect) -> String {
    // One column per statement: SQLite alters one thing at a time (and sea-query
    // panics on more), and a new column is nullable so existing rows stay valid.
    let mut stmt = SqlTable::alter();
    stmt.table(Alias::new(table))
        .add_column(dialect.column(column, def.kind, true));
    dialect.render(&stmt)
}

fn create_index(
    table_name: &str,
    table: &Table,
    name: &str,
    index: &TableIndex,
    dialect: Dialect,
) -> Step {
    let mut stmt = Index::create();
    stmt.name(name).table(Alias::new(table_name));
    for column in &index.columns {
        stmt.col(Alias::new(column.as_str()));
    }
    if index.unique {
        stmt.unique();
    }
    let what = if index.unique {
        "unique index"
    } else {
        "index"
    };
    if let Some(condition) = &index.condition {
        match filter_sql::compile(
            &trellis_engine::model::Filter(condition.clone()),
            table,
            dialect,
            None,
        ) {
            Ok(cond) => {
                stmt.cond_where(cond);
            }
            Err(e) => {
                return Step {
                    kind: StepKind::Unsupported,
                    description: format!(
                        "{what} {name} on {table_name}: its condition cannot be an index condition: {e}"
                    ),
                    sql: Vec::new(),
                };
            }
        }
    }
    Step {
        kind: StepKind::Safe,
        description: format!(
            "create {what} {name} on {table_name} ({})",
            index.columns.join(", ")
        ),
        sql: vec![dialect.index_nulls_first(dialect.render(&stmt), &index.columns)],
    }
}
