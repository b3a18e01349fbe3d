//! `trellis bench`: benchmark suites. Each prints its figures and the ratio to a
//! raw baseline measured in the same run, so results travel between machines.

mod api;
mod apps;
mod check;
mod http;
mod rules;
mod store;

use std::process::ExitCode;
use std::time::Duration;

use clap::ValueEnum;
use serde_json::json;

/// The suites.
#[derive(Clone, Copy, ValueEnum)]
pub enum Suite {
    /// Load and check the example app and the spec-coverage app.
    Check,
    /// Insert, read, list and aggregate records of a realistic entity.
    Store,
    /// Get, list and create over HTTP with 32 connections; cold start.
    Api,
    /// A workflow guard and a computed field per evaluation, and a workflow
    /// action over HTTP, against a PATCH of the same record.
    Rules,
    /// The bundled apps: checking `apps/crm` and `apps/order`, and a page of
    /// sales orders over seeded orders (default 100,000).
    Apps,
}

/// Where the store suite runs.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What `trellis bench` was asked.
#[derive(clap::Args)]
pub struct Options {
    #[arg(value_enum)]
    pub suite: Suite,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// `check`, `apps`: how many times each app is checked (default 200). `rules`: the
    /// requests of each HTTP case (default 3,200); the evaluation cases run ten
    /// times as many evaluations.
    #[arg(long)]
    pub iterations: Option<u32>,
    /// `store`, `api`, `rules`: the database to measure.
    #[arg(long, value_enum, default_value_t = Backend::Sqlite)]
    pub backend: Backend,
    /// `store`, `api`, `apps`: how many records to seed (default 1,000,000, 100,000 and 100,000).
    #[arg(long)]
    pub rows: Option<u64>,
    /// `store`: records per insert transaction (an import's batch size).
    #[arg(long, default_value_t = 10_000)]
    pub batch: u64,
    /// `store`, `api`, `rules`, `apps` on PostgreSQL: a server URL whose user may create databases.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
}

/// One measured case: operations per second of Trellis and of its raw baseline.
pub struct Case {
    pub name: String,
    pub trellis_per_s: f64,
    pub raw_per_s: f64,
}

impl Case {
    pub fn new(name: &str, ops: u64, trellis: Duration, raw: Duration) -> Case {
        Case::uneven(name, (ops, trellis), (ops, raw))
    }

    /// A case whose two sides ran different numbers of operations.
    pub fn uneven(name: &str, trellis: (u64, Duration), raw: (u64, Duration)) -> Case {
        let per_s = |(ops, d): (u64, Duration)| ops as f64 / d.as_secs_f64().max(f64::MIN_POSITIVE);
        Case {
            name: name.to_owned(),
            trellis_per_s: per_s(trellis),
            raw_per_s: per_s(raw),
        }
    }

    /// Trellis' speed as a share of the raw baseline's (1.0: as fast).
    pub fn ratio(&self) -> f64 {
        self.trellis_per_s / self.raw_per_s.max(f64::MIN_POSITIVE)
    }
}

/// What a suite measured: the cases and the figures without a baseline.
pub struct Report {
    pub cases: Vec<Case>,
    pub figures: serde_json::Map<String, serde_json::Value>,
}

/// Checks an app written inline: each file's path inside the app folder and its YAML.
fn check_app(files: &[(&str, &str)]) -> Result<trellis_engine::CheckedModel, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let app = dir.path().join("bench");
    for (path, text) in files {
        let path = app.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
    }
    let report = trellis_engine::check(&[app]);
    report.model.ok_or_else(|| report.diagnostics.render())
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

pub fn run(options: Options) -> Result<ExitCode, String> {
    // Figures without a baseline (cold start, one case relative to another).
    let mut figures = serde_json::Map::new();
    // What the columns mean, when not the plain Trellis against raw.
    let mut legend: &[&str] = &[];
    let (suite, header, cases) = match options.suite {
        Suite::Check => {
            let iterations = options.iterations.unwrap_or(200).max(1);
            (
                "check",
                json!({"iterations": iterations}),
                check::run(iterations)?,
            )
        }
        Suite::Store => {
            let backend = backend_name(options.backend);
            let rows = options.rows.unwrap_or(1_000_000).max(100);
            let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
            let cases = runtime.block_on(store::run(
                options.backend,
                rows,
                options.batch.max(1),
                options.database_url.clone(),
            ))?;
            (
                "store",
                json!({"backend": backend, "rows": rows, "batch": options.batch.max(1)}),
                cases,
            )
        }
        Suite::Api => {
            let rows = options.rows.unwrap_or(100_000).max(1_000);
            let report = api::run(options.backend, rows, options.database_url.clone())?;
            figures = report.figures;
            (
                "api",
                json!({"backend": backend_name(options.backend), "rows": rows, "connections": 32}),
                report.cases,
            )
        }
        Suite::Apps => {
            let rows = options.rows.unwrap_or(100_000).max(1_000);
            let iterations = options.iterations.unwrap_or(200).max(1);
            let report = apps::run(
                options.backend,
                rows,
                iterations,
                options.database_url.clone(),
            )?;
            figures = report.figures;
            (
                "apps",
                json!({"backend": backend_name(options.backend), "rows": rows, "iterations": iterations}),
                report.cases,
            )
        }
        Suite::Rules => {
            let requests = options.iterations.unwrap_or(3_200).max(1) as usize;
            let report = rules::run(options.backend, requests, options.database_url.clone())?;
            figures = report.figures;
            legend = &rules::LEGEND;
            (
                "rules",
                json!({
                    "backend": backend_name(options.backend),
                    "records": rules::RECORDS,
                    "lines": rules::LINES,
                    "connections": http::CONNECTIONS,
                    "requests": requests,
                    "evaluations": rules::evaluations(requests),
                }),
                report.cases,
            )
        }
    };
    if options.json {
        let mut report = json!({"suite": suite});
        if let (Some(report), Some(header)) = (report.as_object_mut(), header.as_object()) {
            report.extend(header.clone());
        }
        report["cases"] = cases
            .iter()
            .map(|c| json!({"name": c.name, "trellis_per_s": c.trellis_per_s, "raw_per_s": c.raw_per_s, "ratio": c.ratio()}))
            .collect();
        if !figures.is_empty() {
            report["figures"] = serde_json::Value::Object(figures);
        }
        println!("{report}");
    } else {
        println!("suite {suite} {header}");
        println!(
            "{:<14} {:>16} {:>16} {:>8}",
            "case", "trellis ops/s", "raw ops/s", "ratio"
        );
        for c in &cases {
            println!(
                "{:<14} {:>16.1} {:>16.1} {:>8.2}",
                c.name,
                c.trellis_per_s,
                c.raw_per_s,
                c.ratio()
            );
        }
        for line in legend {
            println!("{line}");
        }
        for (name, value) in &figures {
            println!(
                "{name}: {value:.2}",
                value = value.as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
