//! The apps' own tests (`tests/*.yaml`) of the example app and of every app
//! under `apps/`, on SQLite and on PostgreSQL, through the runner behind
//! `trellis test`; and the runner itself, on a probe app whose cases are
//! meant to fail in known ways.
//!
//! `TRELLIS_TEST_APPS=leave,crm` limits the run to those app folders.
//! PostgreSQL is reached through `TRELLIS_TEST_POSTGRES` (default
//! `postgres://trellis:trellis@127.0.0.1:5432/postgres`); when it is
//! unreachable that run is skipped with a note, except under `CI=true`, where
//! it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use trellis_runtime::apptest::{self, CaseReport, TestDatabase};

const DEFAULT_POSTGRES: &str = "postgres://trellis:trellis@127.0.0.1:5432/postgres";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `examples/leave` and every folder under `apps/` holding an `app.yaml`,
/// less those `TRELLIS_TEST_APPS` leaves out.
fn app_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![repo().join("examples/leave")];
    let mut bundled: Vec<PathBuf> = std::fs::read_dir(repo().join("apps"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("app.yaml").is_file())
        .collect();
    bundled.sort();
    dirs.extend(bundled);
    if let Ok(only) = std::env::var("TRELLIS_TEST_APPS") {
        let wanted: Vec<&str> = only.split(',').map(str::trim).collect();
        dirs.retain(|d| {
            d.file_name()
                .is_some_and(|n| wanted.contains(&n.to_string_lossy().as_ref()))
        });
    }
    dirs
}

/// Checks an app and runs its cases; each case's line is printed.
async fn run_app(dir: &Path, database: &TestDatabase) -> Result<Vec<CaseReport>, String> {
    let report = trellis_engine::check(&[dir.to_owned()]);
    let Some(model) = report.model else {
        return Err(format!(
            "{} does not check:\n{}",
            dir.display(),
            report.diagnostics.render()
        ));
    };
    let name = model.apps()[0].name();
    Ok(apptest::run(&model, &[name], database, |case| {
        println!("{}", case.line())
    })
    .await)
}

/// Runs every app's cases; fails listing every failed case and app.
async fn every_app_passes(database: TestDatabase) {
    let mut failed = Vec::new();
    let mut cases = 0;
    for dir in app_dirs() {
        match run_app(&dir, &database).await {
            Ok(reports) => {
                cases += reports.len();
                failed.extend(reports.iter().filter(|r| !r.passed).map(CaseReport::line));
            }
            Err(e) => failed.push(e),
        }
    }
    assert!(cases > 0, "no app test ran");
    assert!(
        failed.is_empty(),
        "{} failure(s):\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_app_passes_its_tests_on_sqlite() {
    every_app_passes(TestDatabase::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_app_passes_its_tests_on_postgres() {
    let url =
        std::env::var("TRELLIS_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
    match trellis_runtime::Store::connect(&url).await {
        Ok(probe) => probe.close().await.expect("closes"),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("PostgreSQL is required under CI=true and unreachable: {e}")
        }
        Err(e) => {
            eprintln!("note: skipping the PostgreSQL run of the app tests: {e}");
            return;
        }
    }
    every_app_passes(TestDatabase::Postgres(url)).await;
}

fn probe() -> PathBuf {
    repo().join("tests/fixtures/apptest/probe")
}

fn case<'a>(reports: &'a [CaseReport], name: &str) -> &'a CaseReport {
    reports
        .iter()
        .find(|r| r.case == name)
        .unwrap_or_else(|| panic!("no case {name} in {reports:?}"))
}

/// The failure of a case: (step, line, message).
fn failure(reports: &[CaseReport], name: &str) -> (Option<usize>, Option<u32>, String) {
    let report = case(reports, name);
    assert!(!report.passed, "{name} passed");
    let f = report.failure.clone().expect("a failure");
    (f.step, f.line, f.message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_fails_a_case_at_the_step_that_differs() {
    let reports = run_app(&probe(), &TestDatabase::Sqlite)
        .await
        .expect("the probe checks");
    assert_eq!(reports.len(), 6, "{reports:?}");
    // Besides every kind of expectation, `passes` names the first record a
    // keyed `list` lists and acts on it, filters with `$key` and user names,
    // and expects `notified: []` after steps that told nobody.
    let passes = case(&reports, "passes");
    assert!(passes.passed, "{}", passes.line());

    let (step, line, message) = failure(&reports, "wrong_field");
    assert_eq!((step, line), (Some(2), Some(9)), "{message}");
    assert_eq!(message, "expected `qty` = 3, got 2");

    let (step, line, message) = failure(&reports, "missing_error");
    assert_eq!((step, line), (Some(1), Some(5)), "{message}");
    assert!(
        message.contains("expected the error `required` on `title`, but the step succeeded"),
        "{message}"
    );

    // `notified: []` means nobody: a step that notified someone differs.
    let (step, line, message) = failure(&reports, "nobody_notified");
    assert_eq!((step, line), (Some(2), Some(8)), "{message}");
    assert_eq!(message, "expected nobody to be notified, but ann was");

    // A keyed list that lists nothing has no record to name.
    let (step, line, message) = failure(&reports, "empty_list_key");
    assert_eq!((step, line), (Some(2), Some(8)), "{message}");
    assert!(
        message.contains("the list of `ticket` is empty, so `$large` names no record"),
        "{message}"
    );

    // A job that never ends is stopped by the sandbox; its case fails and the
    // cases after it still run.
    let (step, _, message) = failure(&reports, "runaway");
    assert_eq!(step, Some(1), "{message}");
    assert!(
        message.starts_with("the step failed: script_limit"),
        "{message}"
    );
    assert!(
        reports.iter().position(|r| r.case == "runaway")
            < reports.iter().position(|r| r.case == "wrong_field"),
        "cases run in file order"
    );
}

#[test]
fn trellis_test_prints_a_line_per_case_and_exits_1_on_a_failure() {
    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["test", "tests/fixtures/apptest/probe"])
        .current_dir(repo())
        .output()
        .expect("the trellis binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("PASS probe/passes"), "{stdout}");
    assert!(
        stdout.contains(
            "FAIL probe/wrong_field (tests/fixtures/apptest/probe/tests/wrong_field.yaml:9, step 2): expected `qty` = 3, got 2"
        ),
        "{stdout}"
    );
    assert!(stdout.ends_with("1 passed, 5 failed\n"), "{stdout}");

    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["test", "examples/leave", "--format", "json"])
        .current_dir(repo())
        .output()
        .expect("the trellis binary runs");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(out.status.code(), Some(0), "{doc}");
    assert_eq!(doc["failed"], 0, "{doc}");
    assert_eq!(doc["cases"][0]["app"], "leave", "{doc}");
}
