//! The `check` suite: load and check an app from disk, against reading and
//! parsing the same YAML files and nothing else.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::Case;

/// Each case counts one operation per check of the whole app.
pub fn run(iterations: u32) -> Result<Vec<Case>, String> {
    let cases = check_suite(iterations)?;
    Ok(cases
        .into_iter()
        .map(|(name, trellis, raw)| Case::new(name, 1, trellis, raw))
        .collect())
}

/// The full `trellis check` (read, parse, validate, deserialize, check, compile
/// scripts) against the raw baseline: reading the same files and parsing them
/// into JSON values with the same YAML parser and nothing else.
fn check_suite(iterations: u32) -> Result<Vec<(&'static str, Duration, Duration)>, String> {
    // Run from a checkout: the apps are found from the working directory, else
    // from where the binary was built.
    let locate = |rel: &str| {
        let here = PathBuf::from(rel);
        if here.join("app.yaml").is_file() {
            here
        } else {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
        }
    };
    let apps = [
        ("example_leave", locate("examples/leave")),
        ("spec_coverage", locate("tests/spec-coverage")),
    ];
    let mut cases = Vec::new();
    for (name, dir) in apps {
        let report = trellis_engine::check(std::slice::from_ref(&dir));
        if report.model.is_none() {
            return Err(format!(
                "{} does not check clean:\n{}",
                dir.display(),
                report.diagnostics.render()
            ));
        }
        let files = yaml_files(&dir);
        let scripts = script_files(&dir);
        let trellis = mean(iterations, || {
            std::hint::black_box(trellis_engine::check(std::slice::from_ref(&dir)));
        });
        let raw = mean(iterations, || {
            for path in &files {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let value: Result<serde_json::Value, _> = serde_saphyr::from_str(&text);
                std::hint::black_box(value.ok());
            }
            for path in &scripts {
                std::hint::black_box(std::fs::read_to_string(path).ok());
            }
        });
        cases.push((name, trellis, raw));
    }
    Ok(cases)
}

pub(super) fn mean(iterations: u32, mut f: impl FnMut()) -> Duration {
    f();
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed() / iterations
}

pub(super) fn yaml_files(dir: &std::path::Path) -> Vec<PathBuf> {
    files_ending(dir, "yaml")
}

fn script_files(dir: &std::path::Path) -> Vec<PathBuf> {
    files_ending(dir, "rhai")
}

fn files_ending(dir: &std::path::Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}
