//! The scheduler: alerts run on their schedules, each due run exactly once
//! however many nodes share the database.
//!
//! Every scheduled item has a row in `trellis_jobs` with its next due time. A
//! node claims due items in one write transaction that moves that time past
//! now and writes the run's row, so a due time is consumed once, by whichever
//! node claims it first (PostgreSQL: rows locked `FOR UPDATE SKIP LOCKED`;
//! SQLite: its write transaction excludes other writers). Every run, scheduled
//! or asked for by an administrator, is recorded in `trellis_job_runs` with its
//! start, end, records matched and result.
//!
//! - [`timing`] — schedules: `every 15m`, or cron in the server's time zone;
//! - [`runs`] — the item rows, claiming, and the record of runs;
//! - [`alert`] — one run of an alert, notifying once per occurrence.
//!
//! Jobs (`jobs/*.yaml`) are not scheduled yet: their scripts need the record
//! API (`find`, `get`, `create`, `update`), which scripts do not have yet.

pub mod alert;
pub mod runs;
pub mod timing;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use trellis_engine::CheckedModel;

use crate::catalog::Catalog;
use crate::read::RecordReader;
use crate::record::RecordError;
use crate::store::{Store, StoreError};

pub use alert::AlertModel;
pub use runs::Report;
pub use timing::Timing;

/// The scheduled items and their next due times.
pub const JOBS: &str = "trellis_jobs";
/// One row per run of a scheduled item.
pub const RUNS: &str = "trellis_job_runs";
/// The alerts' current occurrences: which records were told about, and when.
pub const ALERT_HITS: &str = "trellis_alert_hits";

/// How often a node looks for due items.
pub const TICK: Duration = Duration::from_secs(1);

/// A scheduled item of the model.
#[derive(Debug, Clone)]
pub struct Item {
    /// `<app>.<alert>`, unique across apps.
    pub name: String,
    pub schedule: String,
    pub timing: Timing,
    pub alert: AlertModel,
}

/// The scheduled items of a deployment, and running them.
#[derive(Clone)]
pub struct Scheduler {
    items: Arc<HashMap<String, Item>>,
    store: Store,
    reader: Arc<RecordReader>,
    /// This node's name in run rows.
    node: String,
}

impl Scheduler {
    /// The enabled alerts of every app.
    pub fn new(
        model: &CheckedModel,
        catalog: &Catalog,
        store: Store,
        reader: Arc<RecordReader>,
    ) -> Scheduler {
        let mut items = HashMap::new();
        for app in model.apps() {
            let app_name = app.name();
            for (name, alert) in &app.alerts {
                let def = &alert.value;
                let (Some(timing), Some(entity)) = (
                    Timing::parse(&def.schedule),
                    catalog.entity(&app_name, &def.entity),
                ) else {
                    continue;
                };
                if !def.enabled {
                    continue;
                }
                let name = format!("{app_name}.{name}");
                let repeat_after = def
                    .repeat_after
                    .as_deref()
                    .and_then(trellis_engine::check::duration_seconds);
                items.insert(
                    name.clone(),
                    Item {
                        name,
                        schedule: def.schedule.clone(),
                        timing,
                        alert: AlertModel {
                            entity,
                            def: def.clone(),
                            repeat_after,
                        },
                    },
                );
            }
        }
        Scheduler {
            items: Arc::new(items),
            store,
            reader,
            node: node_name(),
        }
    }

    pub fn item(&self, name: &str) -> Option<&Item> {
        self.items.get(name)
    }

    /// Stores a row for every item (its first due time after `now`).
    pub async fn register(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let slots: Vec<runs::Slot> = self
            .items
            .values()
            .map(|item| runs::Slot {
                name: &item.name,
                schedule: &item.schedule,
                next: item.timing.next_after(now),
            })
            .collect();
        runs::register(&self.store, &slots).await
    }

    /// Claims the items due at `now` and runs them; returns what each run did.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<Vec<(String, Report)>, StoreError> {
        let names: Vec<&str> = self.items.keys().map(String::as_str).collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let next = |name: &str| self.items.get(name)?.timing.next_after(now);
        let claimed = runs::claim_due(&self.store, &names, now, &self.node, next).await?;
        let mut done = Vec::with_capacity(claimed.len());
        for claim in claimed {
            match self.run(&claim.name, claim.run_id, now).await {
                Ok(report) => done.push((claim.name, report)),
                // The run's row stays without an end; the others still run.
                Err(e) => tracing::error!(item = %claim.name, error = %e, "a run was not recorded"),
            }
        }
        Ok(done)
    }

    /// Runs an item now, outside its schedule (an administrator's "run now").
    /// `None` when there is no such item.
    pub async fn run_now(&self, name: &str, user: i64) -> Result<Option<Report>, StoreError> {
        if !self.items.contains_key(name) {
            return Ok(None);
        }
        let now = Utc::now();
        let run_id = runs::start_run(
            self.store.connection(),
            self.store.dialect(),
            name,
            &self.node,
            None,
            Some(user),
            now,
        )
        .await?;
        self.run(name, run_id, now).await.map(Some)
    }

    /// Runs a claimed item; a failure is recorded with the run, not returned,
    /// so that one broken alert never stops the others.
    async fn run(&self, name: &str, run_id: i64, now: DateTime<Utc>) -> Result<Report, StoreError> {
        let Some(item) = self.items.get(name) else {
            return Ok(Report::default());
        };
        match alert::run(&self.store, &self.reader, name, &item.alert, run_id, now).await {
            Ok(report) => Ok(report),
            Err(error) => {
                let message = match error {
                    RecordError::Store(e) => e.to_string(),
                    other => other.to_string(),
                };
                tracing::warn!(item = name, error = %message, "a scheduled run failed");
                let report = Report {
                    error: Some(message),
                    ..Report::default()
                };
                let dialect = self.store.dialect();
                runs::finish_run(self.store.connection(), dialect, name, run_id, &report).await?;
                Ok(report)
            }
        }
    }

    /// Registers the items and runs what falls due, every [`TICK`], until stopped.
    pub fn start(self) -> Running {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            if let Err(e) = self.register(Utc::now()).await {
                tracing::error!(error = %e, "the scheduler cannot register its items");
            }
            loop {
                if let Err(e) = self.tick(Utc::now()).await {
                    tracing::warn!(error = %e, "a scheduler tick failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(TICK) => {}
                    _ = stopped.changed() => break,
                }
            }
        });
        Running { stop, task }
    }
}

/// A scheduler running in the background.
pub struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops after the tick in progress.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// A name for this process in run rows: host and process id, which tells an
/// administrator which node ran what.
fn node_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "node".into());
    format!("{host}:{}", std::process::id())
}
