//! The `trellis` binary as a user runs it: exit codes, located diagnostics on
//! stderr, JSON output, scaffolding, workflow drawings and the benchmarks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn trellis(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the trellis binary runs")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_exits_zero_on_the_examples() {
    let out = trellis(&["check", "examples/leave"], &repo());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("0 error(s)"));
}

#[test]
fn the_bundled_apps_check_clean_alone_and_together() {
    for apps in [&["apps/crm"][..], &["apps/crm", "apps/order"]] {
        let args: Vec<&str> = ["check"].iter().chain(apps).copied().collect();
        let out = trellis(&args, &repo());
        assert_eq!(out.status.code(), Some(0), "{apps:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("0 error(s), 0 warning(s)"),
            "{apps:?}: {}",
            stderr(&out)
        );
    }
}

/// Copies the example app into a scratch folder.
fn scratch_example() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dest = tmp.path().join("leave");
    copy_dir(&repo().join("examples/leave"), &dest);
    (tmp, dest)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("readable").flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Appending `tail` to each file of the example in turn makes `check` fail,
/// naming that file and the line of the damage.
fn each_file_broken_by(tail: &str, expected_code: &str) {
    let (tmp, app) = scratch_example();
    let files = yaml_files(&app);
    assert!(files.len() >= 10, "the example has many files");
    for file in files {
        let original = std::fs::read_to_string(&file).expect("readable");
        let broken_line = original.lines().count() + 1;
        std::fs::write(&file, format!("{original}{tail}")).expect("write");
        let out = trellis(&["check", "leave"], tmp.path());
        let rel = file
            .strip_prefix(tmp.path())
            .expect("inside")
            .display()
            .to_string();
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "appending to {rel} must fail:\n{err}"
        );
        let located = format!("{rel}:{broken_line}:");
        assert!(
            err.contains(&located),
            "expected a diagnostic at {located}:\n{err}"
        );
        assert!(
            err.contains(expected_code),
            "expected {expected_code} for {rel}:\n{err}"
        );
        std::fs::write(&file, original).expect("restore");
    }
}

#[test]
fn invalid_yaml_appended_to_any_example_file_is_located() {
    each_file_broken_by("bad: [unclosed\n", "error[E0001]");
}

#[test]
fn an_unknown_key_appended_to_any_example_file_is_located() {
    each_file_broken_by("surprise_key: 1\n", "error[E0003]");
}

#[test]
fn json_output_lists_diagnostics_for_tools() {
    let (tmp, app) = scratch_example();
    let entity = app.join("entities/leave_balance.yaml");
    let text = std::fs::read_to_string(&entity)
        .expect("readable")
        .replace("target: leave_type", "target: leave_typo");
    std::fs::write(&entity, text).expect("write");
    let out = trellis(&["check", "--format", "json", "leave"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    let diags: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let first = &diags[0];
    assert_eq!(first["code"], "E0102");
    assert_eq!(first["severity"], "error");
    assert_eq!(first["file"], "leave/entities/leave_balance.yaml");
    assert_eq!(first["span"]["line"], 4);
    assert_eq!(first["help"], "did you mean `leave_type`?");
}

#[test]
fn new_scaffolds_an_app_that_checks_clean() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = trellis(&["new", "field_service"], tmp.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = trellis(&["check", "field_service"], tmp.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let again = trellis(&["new", "field_service"], tmp.path());
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing folder is not overwritten"
    );
    let bad = trellis(&["new", "Bad-Name"], tmp.path());
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn graph_draws_a_workflow() {
    let out = trellis(&["graph", "examples/leave", "leave_request"], &repo());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mermaid = String::from_utf8_lossy(&out.stdout);
    assert!(mermaid.starts_with("stateDiagram-v2\n"));
    assert!(
        mermaid.contains("submitted --> hr_review : send_to_hr"),
        "{mermaid}"
    );
    let out = trellis(
        &[
            "graph",
            "examples/leave",
            "leave_request",
            "--format",
            "dot",
        ],
        &repo(),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("\"submitted\" -> \"approved\" [label=\"approve\"];")
    );
    let out = trellis(&["graph", "examples/leave", "nope"], &repo());
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn schema_writes_every_kind() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = trellis(&["schema", "--out", "s"], tmp.path());
    assert_eq!(out.status.code(), Some(0));
    for kind in [
        "app",
        "entity",
        "workflow",
        "roles",
        "dashboard",
        "alert",
        "job",
        "test",
        "data",
    ] {
        let written = std::fs::read_to_string(tmp.path().join(format!("s/{kind}.schema.json")))
            .expect("written");
        let committed = std::fs::read_to_string(repo().join(format!("schemas/{kind}.schema.json")))
            .expect("committed");
        assert_eq!(
            written, committed,
            "schemas/{kind}.schema.json differs from `trellis schema`"
        );
    }
}

#[test]
fn bench_check_prints_figures_and_the_ratio_to_the_raw_baseline() {
    let out = trellis(&["bench", "check", "--json", "--iterations", "3"], &repo());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["suite"], "check");
    assert_cases(&report, &["example_leave", "spec_coverage"]);
}

#[test]
fn bench_store_measures_every_case_against_raw_sql() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["bench", "store", "--rows", "300", "--json"])
        .current_dir(tmp.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(
        (
            report["suite"].as_str(),
            report["backend"].as_str(),
            report["rows"].as_u64()
        ),
        (Some("store"), Some("sqlite"), Some(300))
    );
    assert_cases(&report, &["insert", "get_by_id", "list_page", "aggregate"]);
}

#[test]
fn bench_apps_measures_the_bundled_apps_against_parsing_and_raw_sql() {
    let out = trellis(
        &[
            "bench",
            "apps",
            "--rows",
            "2000",
            "--iterations",
            "2",
            "--json",
        ],
        &repo(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(
        (report["suite"].as_str(), report["rows"].as_u64()),
        (Some("apps"), Some(2000))
    );
    assert_cases(&report, &["check", "list_page"]);
    assert!(
        report["figures"]["check_ms"]
            .as_f64()
            .is_some_and(|ms| ms > 0.0)
    );
}

#[test]
fn bench_rules_measures_guards_computed_fields_and_actions_against_a_patch() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["bench", "rules", "--iterations", "64", "--json"])
        .current_dir(tmp.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(
        (
            report["suite"].as_str(),
            report["backend"].as_str(),
            report["requests"].as_u64(),
            report["evaluations"].as_u64()
        ),
        (Some("rules"), Some("sqlite"), Some(64), Some(640))
    );
    assert_cases(&report, &["guard", "computed", "action"]);
    // Every case is measured against the same PATCHes.
    let cases = report["cases"].as_array().expect("cases");
    assert!(
        cases
            .iter()
            .all(|c| c["raw_per_s"] == cases[0]["raw_per_s"])
    );
}

/// Every case has positive figures and their ratio.
fn assert_cases(report: &serde_json::Value, names: &[&str]) {
    let cases = report["cases"].as_array().expect("cases");
    let found: Vec<&str> = cases.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(found, names);
    for case in cases {
        let (Some(t), Some(raw), Some(ratio)) = (
            case["trellis_per_s"].as_f64(),
            case["raw_per_s"].as_f64(),
            case["ratio"].as_f64(),
        ) else {
            panic!("numbers expected: {case}")
        };
        assert!(t > 0.0 && raw > 0.0, "{case}");
        assert!((ratio - t / raw).abs() < 1e-9 * ratio.max(1.0), "{case}");
    }
}

#[test]
fn a_link_to_an_app_beside_but_not_depended_on_says_so() {
    let tmp = tempfile::tempdir().expect("temp dir");
    for (app, entity) in [("crm", "customer"), ("shop", "order")] {
        let dir = tmp.path().join(app);
        std::fs::create_dir_all(dir.join("entities")).expect("mkdir");
        std::fs::write(dir.join("app.yaml"), format!("name: {app}\nlabel: {app}\n"))
            .expect("write");
        let fields = if app == "shop" {
            "  customer: {type: link, target: crm.customer}\n"
        } else {
            "  name: {type: text}\n"
        };
        std::fs::write(
            dir.join(format!("entities/{entity}.yaml")),
            format!("label: {entity}\nfields:\n{fields}"),
        )
        .expect("write");
    }
    let out = trellis(&["check", "shop"], tmp.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "shop/entities/order.yaml:3:34: error[E0103]: app `crm` is not a dependency of `shop`"
        ),
        "{err}"
    );
    assert!(
        err.contains("help: add `crm` to `depends` in app.yaml"),
        "{err}"
    );
    // Once declared, the dependency is found beside the app and the link resolves.
    std::fs::write(
        tmp.path().join("shop/app.yaml"),
        "name: shop\nlabel: shop\ndepends: [crm]\n",
    )
    .expect("write");
    let out = trellis(&["check", "shop"], tmp.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn migrate_prints_the_plan_then_applies_it() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let run = |args: &[&str]| {
        let mut all = vec!["migrate", "examples/leave", "--data-dir", data];
        all.extend_from_slice(args);
        let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(&all)
            .current_dir(repo())
            .env_remove("DATABASE_URL")
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let planned = run(&["--plan"]);
    assert!(
        planned.contains("create table leave__leave_request"),
        "{planned}"
    );
    assert!(
        planned.contains("CREATE TABLE \"leave__leave_request\""),
        "{planned}"
    );
    assert!(!planned.ends_with("applied\n"), "--plan applies nothing");
    let applied = run(&[]);
    assert!(
        applied.contains("create table leave__leave_request") && applied.ends_with("applied\n"),
        "{applied}"
    );
    assert_eq!(run(&["--plan"]), "the database is up to date\n");
}
