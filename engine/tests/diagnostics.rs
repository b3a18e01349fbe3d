//! Broken models and the diagnostics `trellis check` must print for them.
//!
//! Each folder under `tests/fixtures/broken/` is an app with mistakes; its
//! `expected.txt` is the rendered output (paths relative to the repository).
//! Run with `TRELLIS_BLESS=1` to rewrite the snapshots after a deliberate change,
//! then review the diff like code.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("engine/ has a parent")
        .to_owned()
}

fn render(dir: &Path) -> String {
    let report = trellis_engine::check(&[dir.to_owned()]);
    let root = format!("{}/", repo().display());
    report.diagnostics.render().replace(&root, "")
}

#[test]
fn broken_fixtures_report_the_expected_diagnostics() {
    let root = repo().join("tests/fixtures/broken");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/fixtures/broken exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 25,
        "expected at least 25 broken fixtures, found {}",
        cases.len()
    );
    let bless = std::env::var_os("TRELLIS_BLESS").is_some();
    let mut failures = Vec::new();
    for case in &cases {
        let actual = render(case);
        let expected_path = case.join("expected.txt");
        if bless {
            std::fs::write(&expected_path, &actual).expect("write snapshot");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "--- {}\n=== expected:\n{expected}\n=== actual:\n{actual}",
                case.display()
            ));
        }
        assert!(
            actual.contains(": error["),
            "{} reports no error: a broken fixture must be broken",
            case.display()
        );
    }
    assert!(
        failures.is_empty(),
        "{} snapshot(s) differ (TRELLIS_BLESS=1 rewrites them):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
