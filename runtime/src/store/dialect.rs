//! Everything that differs between SQLite and PostgreSQL, in one place: column
//! types, how exact numbers and dates are stored, and how statements are rendered.

use sea_orm::DbBackend;
use sea_orm::sea_query::{
    ColumnDef, PostgresQueryBuilder, SchemaStatementBuilder, SqliteQueryBuilder,
};

use super::layout::ColumnKind;

/// The SQL dialect of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The dialect a database URL speaks.
    pub fn of_url(url: &str) -> Option<Dialect> {
        if url.starts_with("sqlite:") {
            Some(Dialect::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Dialect::Postgres)
        } else {
            None
        }
    }

    pub fn backend(self) -> DbBackend {
        match self {
            Dialect::Sqlite => DbBackend::Sqlite,
            Dialect::Postgres => DbBackend::Postgres,
        }
    }

    /// An instant as the bound value of a datetime column: fixed-width UTC text
    /// on SQLite (so that text order is time order), `timestamptz` on PostgreSQL.
    pub fn time(self, t: chrono::DateTime<chrono::Utc>) -> sea_orm::Value {
        match self {
            Dialect::Sqlite => crate::record::value::datetime_text(t).into(),
            Dialect::Postgres => t.into(),
        }
    }

    /// Hand-written SQL with `?` placeholders, numbered `$1, $2…` for PostgreSQL.
    /// (For tests, benchmarks and the few statements written by hand.)
    pub fn numbered(self, sql: &str) -> String {
        if self == Dialect::Sqlite {
            return sql.to_owned();
        }
        let mut n = 0;
        let mut out = String::with_capacity(sql.len() + 16);
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Renders a DDL statement as this dialect's SQL.
    pub fn render<S: SchemaStatementBuilder>(self, statement: &S) -> String {
        match self {
            Dialect::Sqlite => statement.to_string(SqliteQueryBuilder),
            Dialect::Postgres => statement.to_string(PostgresQueryBuilder),
        }
    }

    /// Trellis sorts NULLs as the smallest values (first ascending, last
    /// descending), as SQLite does. PostgreSQL sorts them as the largest, so its
    /// indexes are built NULLS FIRST: an index scan then yields exactly the order a
    /// list asks for, in both directions, instead of a sort of every match.
    pub fn index_nulls_first(self, create_index: String, columns: &[String]) -> String {
        if self == Dialect::Sqlite {
            return create_index;
        }
        let quote = |c: &String| format!("\"{}\"", c.replace('"', "\"\""));
        let plain = format!(
            "({})",
            columns.iter().map(quote).collect::<Vec<_>>().join(", ")
        );
        // `id` is never null and lists order it plainly (`ORDER BY id`); a NULLS
        // clause on it would keep the index from serving that order.
        let nulls_first = format!(
            "({})",
            columns
                .iter()
                .map(|c| match c.as_str() {
                    "id" => quote(c),
                    _ => format!("{} NULLS FIRST", quote(c)),
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        create_index.replacen(&plain, &nulls_first, 1)
    }

    /// The column definition of a column kind.
    ///
    /// SQLite has no exact decimal type (sea-query maps `decimal` to REAL), so
    /// exact numbers are stored there as integers in minor units, the scale coming
    /// from the model. Dates are `YYYY-MM-DD` text and datetimes fixed-width UTC
    /// text on SQLite, so that text order is time order.
    pub fn column(self, name: &str, kind: ColumnKind, nullable: bool) -> ColumnDef {
        let mut def = ColumnDef::new(name.to_owned());
        match (kind, self) {
            (ColumnKind::Id, Dialect::Sqlite) => {
                def.integer().not_null().auto_increment().primary_key()
            }
            (ColumnKind::Id, Dialect::Postgres) => {
                def.big_integer().not_null().auto_increment().primary_key()
            }
            (ColumnKind::Integer, _) => def.big_integer(),
            (ColumnKind::Text, _) => def.text(),
            (ColumnKind::Boolean, _) => def.boolean(),
            (ColumnKind::Date, Dialect::Sqlite) | (ColumnKind::DateTime, Dialect::Sqlite) => {
                def.text()
            }
            (ColumnKind::Date, Dialect::Postgres) => def.date(),
            (ColumnKind::DateTime, Dialect::Postgres) => def.timestamp_with_time_zone(),
            (ColumnKind::Exact { .. }, Dialect::Sqlite) => def.big_integer(),
            (ColumnKind::Exact { precision, scale }, Dialect::Postgres) => {
                def.decimal_len(u32::from(precision), u32::from(scale))
            }
            (ColumnKind::Json, Dialect::Sqlite) => def.text(),
            (ColumnKind::Json, Dialect::Postgres) => def.json_binary(),
        };
        if kind != ColumnKind::Id {
            if nullable {
                def.null();
            } else {
                def.not_null();
            }
        }
        def
    }
}
