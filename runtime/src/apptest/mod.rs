//! `trellis test`: runs the scenarios of apps (`tests/*.yaml`), each on a
//! fresh database with every app of the model deployed as `serve` deploys
//! them, on a clock set to the scenario's `today`.
//!
//! - [`database`] — a fresh SQLite or PostgreSQL database per case;
//! - [`scenario`] — the accounts and `given` records a case starts from;
//! - [`values`] — `$key`, user names, `$today±Nd` and `$now` in values
//!   (`$key` and user names in `list` filters);
//! - [`step`] — one step as its user, through [`Services`] like a request;
//! - [`watch`] — who a step notified and what it created;
//! - [`errors`] — a failed step as the codes `expect.error` names;
//! - [`expect`] — comparing what a step did with its `expect`;
//! - [`case`] — one case from set-up to its first differing step.
//!
//! The runner writes only through the pipeline and reads app tables only
//! through the reader; it never changes the model or another case's database.

pub mod case;
pub mod database;
pub mod errors;
pub mod expect;
pub mod scenario;
pub mod step;
pub mod values;
pub mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use trellis_engine::CheckedModel;
use trellis_engine::load::{Item, LoadedApp};
use trellis_engine::model::{AppTest, FieldType};

use crate::clock::Clock;
use crate::services::Services;
pub use case::CaseFailure;
pub use database::TestDatabase;

/// The longest a case may run. Scripts stop at the sandbox's limits long
/// before; this catches anything else that hangs, and fails only its case.
const CASE_TIMEOUT: Duration = Duration::from_secs(300);

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    pub app: String,
    /// The test's name (its file name without `.yaml`).
    pub case: String,
    pub file: String,
    pub label: String,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

/// Why a case failed, and where.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The step (1-based); none when the set-up failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// The line of the step (or of the set-up entry) in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    pub message: String,
}

impl CaseReport {
    /// One line for people: `PASS app/case — label` or
    /// `FAIL app/case (file:line, step n): what differed`.
    pub fn line(&self) -> String {
        match &self.failure {
            None => format!("PASS {}/{} — {}", self.app, self.case, self.label),
            Some(f) => {
                let mut at = self.file.clone();
                if let Some(line) = f.line {
                    at.push_str(&format!(":{line}"));
                }
                if let Some(step) = f.step {
                    at.push_str(&format!(", step {step}"));
                }
                format!("FAIL {}/{} ({at}): {}", self.app, self.case, f.message)
            }
        }
    }
}

/// Runs every case of the apps named `apps` (in the model's order), calling
/// `on_case` as each one ends; returns every report.
pub async fn run(
    model: &CheckedModel,
    apps: &[String],
    database: &TestDatabase,
    mut on_case: impl FnMut(&CaseReport),
) -> Vec<CaseReport> {
    let kinds = Arc::new(attribute_kinds(model));
    let mut reports = Vec::new();
    for app in model.apps().iter().filter(|a| apps.contains(&a.name())) {
        for item in app.tests.values() {
            let failure = run_case(model, app, item, database, &kinds).await;
            let report = CaseReport {
                app: app.name(),
                case: item.name.clone(),
                file: item.file.path.display().to_string(),
                label: item.value.label.text("en").to_owned(),
                passed: failure.is_none(),
                failure: failure.map(|f| Failure {
                    line: item.file.value_span(&f.pointer).map(|s| s.line),
                    step: f.step,
                    message: f.message,
                }),
            };
            on_case(&report);
            reports.push(report);
        }
    }
    reports
}

/// One case: a fresh database, the model deployed, the case run in a task of
/// its own (a panic or a hang fails the case, not the run), the database removed.
async fn run_case(
    model: &CheckedModel,
    app: &LoadedApp,
    item: &Item<AppTest>,
    database: &TestDatabase,
    kinds: &Arc<HashMap<String, FieldType>>,
) -> Option<CaseFailure> {
    let setup = |message: String| CaseFailure {
        pointer: String::new(),
        step: None,
        message,
    };
    let today = match &item.value.today {
        Some(text) => match chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            Ok(date) => Some(date),
            Err(_) => return Some(setup(format!("`today: {text}` is not a date"))),
        },
        None => None,
    };
    let clock = today.map_or_else(Clock::real, Clock::on);
    let scratch = match database.fresh().await {
        Ok(scratch) => scratch,
        Err(e) => return Some(setup(format!("no database for the case: {e}"))),
    };
    let store = scratch.store.clone().with_clock(clock);
    let failure = match crate::serve::prepare(&store, model, None).await {
        Err(e) => Some(setup(format!("deploying the apps: {e}"))),
        Ok(_) => {
            let services = Services::new(store, model);
            match services.scheduler.register(clock.now()).await {
                Err(e) => Some(setup(format!("registering the scheduled items: {e}"))),
                Ok(()) => {
                    let task = tokio::spawn(case::run(
                        services,
                        app.name(),
                        Arc::new(item.value.clone()),
                        clock,
                        kinds.clone(),
                    ));
                    let abort = task.abort_handle();
                    match tokio::time::timeout(CASE_TIMEOUT, task).await {
                        Ok(Ok(failure)) => failure,
                        Ok(Err(e)) => Some(setup(format!("the case stopped: {e}"))),
                        Err(_) => {
                            abort.abort();
                            Some(setup(format!(
                                "the case ran longer than {}s",
                                CASE_TIMEOUT.as_secs()
                            )))
                        }
                    }
                }
            }
        }
    };
    if let Err(e) = scratch.remove().await {
        tracing::warn!(error = %e, "a test database was not removed");
    }
    failure
}

/// The declared `$user` attributes and their types, over every app.
fn attribute_kinds(model: &CheckedModel) -> HashMap<String, FieldType> {
    model
        .apps()
        .iter()
        .filter_map(|a| a.roles.as_ref())
        .flat_map(|roles| roles.value.user_attributes.iter())
        .map(|(name, field)| (name.clone(), field.kind))
        .collect()
}
