//! The scheduler: alerts and jobs run on their schedules, each due run
//! exactly once however many nodes share the database.
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
//! - [`alert`] — one run of an alert, notifying once per occurrence;
//! - jobs run their script with the record API (`hooks`) as the platform.

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

use trellis_engine::check::JOB_VARIABLES;
use trellis_engine::model::Recipient;
use trellis_engine::script::ScriptOrigin;

use crate::catalog::{Catalog, EntityModel};
use crate::hooks::{HookRun, Script, Vars};
use crate::read::{Access, RecordReader};
use crate::record::{Actor, RecordError};
use crate::store::{Store, StoreError};
use crate::write::RecordWriter;

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
    /// `<app>.<alert or job>`, unique across apps (alerts and jobs share names).
    pub name: String,
    pub schedule: String,
    pub timing: Timing,
    pub kind: Kind,
}

/// What a scheduled item does.
#[derive(Debug, Clone)]
pub enum Kind {
    Alert(AlertModel),
    /// A job: a script with the record API, run as the platform.
    Job {
        app: String,
        label: trellis_engine::model::Label,
        script: Script,
    },
    /// The workflows' due times: reminders and escalations.
    DueTimes,
}

/// The built-in item of due times (`_` keeps it apart from app names).
pub const DUE_TIMES: &str = "_workflow.due_times";

/// Who hears about a record waiting in a state: (the people who can act on
/// it, `escalate_to`), by (app, entity, state).
type DueRecipients = HashMap<(String, String, String), (Vec<Recipient>, Vec<Recipient>)>;

impl Item {
    /// `alert` or `job`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Alert(_) => "alert",
            Kind::Job { .. } => "job",
            Kind::DueTimes => "due_times",
        }
    }
}

/// The scheduled items of a deployment, and running them.
#[derive(Clone)]
pub struct Scheduler {
    items: Arc<HashMap<String, Item>>,
    due: Arc<DueRecipients>,
    store: Store,
    catalog: Arc<Catalog>,
    reader: Arc<RecordReader>,
    writer: RecordWriter,
    /// This node's name in run rows.
    node: String,
}

impl Scheduler {
    /// The enabled alerts and jobs of every app.
    pub fn new(
        model: &CheckedModel,
        catalog: Arc<Catalog>,
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
                        kind: Kind::Alert(AlertModel {
                            entity,
                            def: def.clone(),
                            repeat_after,
                        }),
                    },
                );
            }
            for (name, job) in &app.jobs {
                let def = &job.value;
                let Some(timing) = Timing::parse(&def.schedule).filter(|_| def.enabled) else {
                    continue;
                };
                let (source, origin) = match (&def.script, &def.file) {
                    (Some(s), _) => {
                        let path = job
                            .file
                            .path
                            .strip_prefix(&app.dir)
                            .unwrap_or(&job.file.path);
                        let origin = ScriptOrigin::inline(
                            &job.file,
                            path.display().to_string(),
                            "/script",
                            s,
                            0,
                        );
                        (s.clone(), origin)
                    }
                    (None, Some(f)) => {
                        let Some(file) = app.scripts.get(f.as_str()) else {
                            continue;
                        };
                        (file.text.clone(), ScriptOrigin::file(f.as_str()))
                    }
                    (None, None) => continue,
                };
                let Ok(compiled) = catalog.sandbox().compile(&source, &JOB_VARIABLES) else {
                    continue;
                };
                let name = format!("{app_name}.{name}");
                let script = Script {
                    name: format!("job `{name}`"),
                    origin,
                    compiled,
                };
                items.insert(
                    name.clone(),
                    Item {
                        name,
                        schedule: def.schedule.clone(),
                        timing,
                        kind: Kind::Job {
                            app: app_name.clone(),
                            label: def.label.clone(),
                            script,
                        },
                    },
                );
            }
        }
        let due = due_recipients(model);
        if !due.is_empty() {
            items.insert(
                DUE_TIMES.to_owned(),
                Item {
                    name: DUE_TIMES.to_owned(),
                    schedule: "every 1m".to_owned(),
                    timing: Timing::Every(60),
                    kind: Kind::DueTimes,
                },
            );
        }
        Scheduler {
            items: Arc::new(items),
            due: Arc::new(due),
            writer: RecordWriter::new(store.clone(), catalog.clone()),
            catalog,
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
        let now = self.store.clock().now();
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
        let ran = match &item.kind {
            Kind::Alert(a) => alert::run(&self.store, &self.reader, name, a, run_id, now).await,
            Kind::Job { app, script, .. } => self.job(name, app, script, run_id).await,
            Kind::DueTimes => self.due_times(name, run_id, now).await,
        };
        match ran {
            Ok(report) => Ok(report),
            Err(error) => {
                let failure = error.to_field_errors();
                let message = match error {
                    RecordError::Store(e) => e.to_string(),
                    other => other.to_string(),
                };
                tracing::warn!(item = name, error = %message, "a scheduled run failed");
                let report = Report {
                    error: Some(message),
                    failure,
                    ..Report::default()
                };
                let dialect = self.store.dialect();
                runs::finish_run(self.store.connection(), dialect, name, run_id, &report).await?;
                Ok(report)
            }
        }
    }

    /// Runs a job's script as the platform, with the record API, in one
    /// transaction that also records the run: its writes and its record
    /// commit together, or neither does.
    async fn job(
        &self,
        name: &str,
        app: &str,
        script: &Script,
        run_id: i64,
    ) -> Result<Report, RecordError> {
        let system = Actor::system();
        let cx = self.writer.context(&system, true);
        let everything = |_: &EntityModel, _| Some(Access::everything());
        let txn = self.store.begin_write().await?;
        runs::lock_item(&txn, name).await?;
        let hooks = HookRun {
            txn: &txn,
            writer: &self.writer,
            reader: &self.reader,
            catalog: &self.catalog,
            app,
            cx: &cx,
            access: &everything,
        };
        hooks.run(script, Vars::default()).await?;
        let report = Report::default();
        runs::finish_run(&txn, self.store.dialect(), name, run_id, &report).await?;
        txn.commit().await?;
        Ok(report)
    }

    /// Sends the reminders and escalations of workflow due times.
    async fn due_times(
        &self,
        name: &str,
        run_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Report, RecordError> {
        let recipients = |app: &str, entity: &str, state: &str| {
            self.due
                .get(&(app.to_owned(), entity.to_owned(), state.to_owned()))
                .cloned()
        };
        let (reminded, escalated) =
            crate::workflow::due::remind_and_escalate(&self.store, &self.catalog, &recipients, now)
                .await?;
        let report = Report {
            matched: reminded + escalated,
            notified: reminded + escalated,
            ..Report::default()
        };
        runs::finish_run(
            self.store.connection(),
            self.store.dialect(),
            name,
            run_id,
            &report,
        )
        .await?;
        Ok(report)
    }

    /// Registers the items and runs what falls due, every [`TICK`], until stopped.
    pub fn start(self) -> Running {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            if let Err(e) = self.register(self.store.clock().now()).await {
                tracing::error!(error = %e, "the scheduler cannot register its items");
            }
            loop {
                if let Err(e) = self.tick(self.store.clock().now()).await {
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

/// For every workflow state with a due time: the people who can act on a
/// record in it (the roles and user fields of the actions leaving it) and
/// those its `escalate_to` names.
fn due_recipients(model: &CheckedModel) -> DueRecipients {
    let mut out = HashMap::new();
    for app in model.apps() {
        for workflow in app.workflows.values() {
            let w = &workflow.value;
            for (state_name, state) in &w.states {
                let Some(due) = &state.due else { continue };
                let mut actors: Vec<Recipient> = Vec::new();
                for action in &w.transitions {
                    let leaves = action.from.as_ref().is_some_and(|from| {
                        let names = from.names();
                        names.contains(&state_name.as_str())
                            || (names.contains(&"*") && !state.is_final)
                    });
                    if !leaves {
                        continue;
                    }
                    let named = action
                        .roles
                        .iter()
                        .map(|r| Recipient::Role(r.clone()))
                        .chain(action.users.iter().map(|f| Recipient::Field(f.clone())));
                    for recipient in named {
                        if !actors.contains(&recipient) {
                            actors.push(recipient);
                        }
                    }
                }
                out.insert(
                    (app.name(), w.entity.clone(), state_name.clone()),
                    (actors, due.escalate_to.clone()),
                );
            }
        }
    }
    out
}

/// A name for this process in run rows: host and process id, which tells an
/// administrator which node ran what.
fn node_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "node".into());
    format!("{host}:{}", std::process::id())
}
