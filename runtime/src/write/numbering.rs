//! Numbering series: `SO-{yyyy}{mm}{dd}-{seq:4}` → `SO-20261123-0042`.
//!
//! One counter row per series (the pattern's date part is in the series key, so
//! a daily pattern restarts every day). A gap-free series takes its number inside
//! the record's write transaction: the counter row stays locked until commit, so
//! numbers are never skipped, at the price of serialising that series' writers.
//! A gap-tolerant series takes blocks of numbers in short transactions of their
//! own and hands them out from memory, so a busy series never waits on a lock;
//! numbers of an unfinished block are lost when the process stops.

use std::collections::HashMap;
use std::sync::Mutex;

use sea_orm::{ConnectionTrait, Statement};

use crate::store::{Dialect, Store, StoreError};

/// The platform table of counters.
pub use crate::deploy::SEQUENCES;

/// How many numbers a gap-tolerant series reserves at once.
const BLOCK: i64 = 50;

/// The series key of a pattern on a date: the table plus the pattern's date parts.
pub fn series_key(table: &str, pattern: &str, date: chrono::NaiveDate) -> String {
    let dated = render(pattern, date, None);
    format!("{table}:{dated}")
}

/// A number from a pattern; `seq` fills `{seq:N}` (`None` leaves it, for keys).
pub fn render(pattern: &str, date: chrono::NaiveDate, seq: Option<i64>) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let token = &rest[open + 1..open + close];
        match token {
            "yyyy" => out.push_str(&date.format("%Y").to_string()),
            "yy" => out.push_str(&date.format("%y").to_string()),
            "mm" => out.push_str(&date.format("%m").to_string()),
            "dd" => out.push_str(&date.format("%d").to_string()),
            t => match (
                t.strip_prefix("seq:").and_then(|d| d.parse::<usize>().ok()),
                seq,
            ) {
                (Some(width), Some(n)) => out.push_str(&format!("{n:0width$}")),
                _ => out.push_str("{seq}"),
            },
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// Advances a counter by `step` and returns its new value, creating it if needed.
pub async fn advance<C: ConnectionTrait>(
    conn: &C,
    dialect: Dialect,
    series: &str,
    step: i64,
) -> Result<i64, StoreError> {
    let sql = match dialect {
        Dialect::Sqlite => format!(
            "INSERT INTO {SEQUENCES} (series, value) VALUES (?, ?) ON CONFLICT (series) DO UPDATE SET value = {SEQUENCES}.value + excluded.value RETURNING value"
        ),
        Dialect::Postgres => format!(
            "INSERT INTO {SEQUENCES} (series, value) VALUES ($1, $2) ON CONFLICT (series) DO UPDATE SET value = {SEQUENCES}.value + excluded.value RETURNING value"
        ),
    };
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            dialect.backend(),
            sql,
            [series.into(), step.into()],
        ))
        .await?
        .ok_or_else(|| StoreError::Database(sea_orm::DbErr::RecordNotFound(series.to_owned())))?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

/// Blocks of gap-tolerant numbers held by this process.
#[derive(Debug, Default)]
pub struct Blocks {
    ranges: Mutex<HashMap<String, (i64, i64)>>,
}

impl Blocks {
    /// The next number of a gap-tolerant series.
    pub async fn next(&self, store: &Store, series: &str) -> Result<i64, StoreError> {
        if let Some(n) = self.take(series) {
            return Ok(n);
        }
        // A short transaction of its own: the block is committed before use, so two
        // processes never hand out the same numbers.
        let txn = store.begin_write().await?;
        let end = advance(&txn, store.dialect(), series, BLOCK).await?;
        txn.commit().await?;
        let first = end - BLOCK + 1;
        let mut ranges = self.ranges.lock().unwrap_or_else(|p| p.into_inner());
        ranges.insert(series.to_owned(), (first + 1, end));
        Ok(first)
    }

    fn take(&self, series: &str) -> Option<i64> {
        let mut ranges = self.ranges.lock().unwrap_or_else(|p| p.into_inner());
        let (next, end) = ranges.get_mut(series)?;
        if *next > *end {
            return None;
        }
        let n = *next;
        *next += 1;
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_render_dates_and_padded_counters() {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).expect("date");
        assert_eq!(
            render("SO-{yyyy}{mm}{dd}-{seq:4}", day, Some(42)),
            "SO-20261123-0042"
        );
        assert_eq!(render("CSTZ{seq:6}", day, Some(262)), "CSTZ000262");
        assert_eq!(
            series_key("crm__customer", "CSTZ{seq:6}", day),
            "crm__customer:CSTZ{seq}"
        );
        assert_eq!(
            series_key("o__order", "{yy}{mm}-{seq:3}", day),
            "o__order:2611-{seq}"
        );
    }
}
