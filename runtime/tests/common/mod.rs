//! One helper runs every storage test on SQLite and on PostgreSQL.
//!
//! Each run gets a fresh database, named after the test, dropped afterwards
//! (a failed test keeps its PostgreSQL database for inspection). PostgreSQL is
//! reached through `TRELLIS_TEST_POSTGRES` (default
//! `postgres://trellis:trellis@127.0.0.1:5432/postgres`); when it is unreachable
//! the PostgreSQL run is skipped with a note, except under `CI=true`, where the
//! test fails: a missing database never passes silently.

#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use sea_orm::{ConnectionTrait, Statement};
use trellis_engine::CheckedModel;
use trellis_runtime::Store;

const DEFAULT_POSTGRES: &str = "postgres://trellis:trellis@127.0.0.1:5432/postgres";

/// Runs `body` against a fresh SQLite database, then a fresh PostgreSQL one.
pub async fn each_backend(test: &str, body: impl AsyncFn(Store)) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_data_dir(dir.path())
        .await
        .expect("SQLite opens");
    body(store.clone()).await;
    store.close().await.expect("SQLite closes");

    let admin_url =
        std::env::var("TRELLIS_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
    let admin = match Store::connect(&admin_url).await {
        Ok(admin) => admin,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("PostgreSQL is required under CI=true and unreachable: {e}")
        }
        Err(e) => {
            eprintln!("note: skipping the PostgreSQL run of {test}: {e}");
            return;
        }
    };
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "trellis_t_{}_{}_{}",
        test.chars().take(30).collect::<String>(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    admin
        .execute_sql(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create the test database");
    let url = replace_database(&admin_url, &name);
    let store = Store::connect(&url).await.expect("the test database opens");
    body(store.clone()).await;
    store.close().await.expect("PostgreSQL closes");
    admin
        .drop_database(&name)
        .await
        .expect("drop the test database");
    admin.close().await.expect("admin closes");
}

fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let cut = base.rfind('/').expect("a database URL has a path");
    format!("{}/{database}{query}", &base[..cut])
}

/// Checks an app written as (relative path, text) pairs into a temp folder.
pub fn model(files: &[(&str, &str)]) -> CheckedModel {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = dir.path().join("app");
    for (rel, text) in files {
        let path = app.join(rel);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
    }
    checked(&app)
}

/// Checks an app folder; panics with the diagnostics if it is not clean.
pub fn checked(dir: &Path) -> CheckedModel {
    let report = trellis_engine::check(&[dir.to_owned()]);
    match report.model {
        Some(model) => model,
        None => panic!(
            "the test model does not check:\n{}",
            report.diagnostics.render()
        ),
    }
}

/// Runs SQL written with `?` placeholders, numbered for PostgreSQL.
pub async fn exec(
    store: &Store,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> Result<(), sea_orm::DbErr> {
    store
        .connection()
        .execute_raw(statement(store, sql, values))
        .await
        .map(|_| ())
}

/// Reads one column of every row as JSON text, via `CAST(… AS TEXT)` in the query.
pub async fn texts(store: &Store, sql: &str) -> Vec<Option<String>> {
    let rows = store
        .connection()
        .query_all_raw(statement(store, sql, vec![]))
        .await
        .expect("query runs");
    rows.iter()
        .map(|r| {
            r.try_get_by_index::<Option<String>>(0)
                .expect("a text column")
        })
        .collect()
}

pub async fn count(store: &Store, sql: &str) -> i64 {
    let row = store
        .connection()
        .query_one_raw(statement(store, sql, vec![]))
        .await
        .expect("query runs")
        .expect("one row");
    row.try_get_by_index::<i64>(0).expect("a count")
}

fn statement(store: &Store, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    let sql = store.dialect().numbered(sql);
    Statement::from_sql_and_values(store.dialect().backend(), sql, values)
}
