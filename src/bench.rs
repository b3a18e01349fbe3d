//! `trellis bench`: benchmark suites. Each prints its figures and the ratio to a
//! raw baseline measured in the same run, so results travel between machines.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde_json::json;

#[derive(Clone, Copy, ValueEnum)]
pub enum Suite {
    /// Load and check the example app and the spec-coverage app.
    Check,
}

/// One measured case: Trellis against its raw baseline.
struct Case {
    name: String,
    trellis: Duration,
    raw: Duration,
}

pub fn run(suite: Suite, json_out: bool, iterations: u32) -> Result<ExitCode, String> {
    let iterations = iterations.max(1);
    let cases = match suite {
        Suite::Check => check_suite(iterations)?,
    };
    if json_out {
        let cases: Vec<_> = cases
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "trellis_mean_ms": ms(c.trellis),
                    "raw_mean_ms": ms(c.raw),
                    "ratio": ratio(c),
                })
            })
            .collect();
        println!(
            "{}",
            json!({"suite": "check", "iterations": iterations, "cases": cases})
        );
    } else {
        println!("suite check, {iterations} iterations, mean per iteration");
        println!(
            "{:<16} {:>14} {:>14} {:>8}",
            "case", "trellis ms", "raw parse ms", "ratio"
        );
        for c in &cases {
            println!(
                "{:<16} {:>14.3} {:>14.3} {:>7.1}x",
                c.name,
                ms(c.trellis),
                ms(c.raw),
                ratio(c)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ratio(c: &Case) -> f64 {
    c.trellis.as_secs_f64() / c.raw.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// The full `trellis check` (read, parse, validate, deserialize, check, compile
/// scripts) against the raw baseline: reading the same files and parsing them
/// into JSON values with the same YAML parser and nothing else.
fn check_suite(iterations: u32) -> Result<Vec<Case>, String> {
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
        cases.push(Case {
            name: name.into(),
            trellis,
            raw,
        });
    }
    Ok(cases)
}

fn mean(iterations: u32, mut f: impl FnMut()) -> Duration {
    f();
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed() / iterations
}

fn yaml_files(dir: &std::path::Path) -> Vec<PathBuf> {
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
