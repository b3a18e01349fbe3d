//! The scheduler on SQLite and PostgreSQL: alerts notify once per occurrence
//! (and again after `repeat_after`), every run is recorded, and when two
//! nodes tick at the same instants each due time runs exactly once.
//!
//! Time is stepped by passing the instant of each tick, not slept through.

mod common;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use common::{count, each_backend, model};
use serde_json::{Map, Value as Json, json};
use trellis_engine::CheckedModel;
use trellis_runtime::account::{AccountChange, create_user};
use trellis_runtime::read::{Access, RecordReader};
use trellis_runtime::record::Actor;
use trellis_runtime::schedule::{Report, Scheduler};
use trellis_runtime::write::RecordWriter;
use trellis_runtime::{Catalog, Store};

fn app() -> CheckedModel {
    model(&[
        ("app.yaml", "name: ops\nlabel: Ops\n"),
        (
            "entities/ticket.yaml",
            "label: Ticket\ntitle: title\nfields:\n  \
             title: {type: text, label: Title, required: true}\n  \
             open: {type: boolean, label: Open}\n  \
             owner: {type: user, label: Owner}\n",
        ),
        (
            "alerts/open_ticket.yaml",
            "label: Open ticket\nentity: ticket\nschedule: every 10m\n\
             filter: {open: true}\nrecipients: [{field: owner}]\n\
             message: \"{{ record.title }} is open\"\n",
        ),
        (
            "entities/tally.yaml",
            "label: Tally\nfields:\n  n: {type: integer, label: Count}\n",
        ),
        (
            "jobs/count.yaml",
            "label: Count\nschedule: every 10m\nscript: |\n  \
             let found = find(\"tally\", #{});\n  \
             if found.len() == 0 { create(\"tally\", #{ n: 1 }); }\n  \
             else { update(\"tally\", found[0].id, #{ n: found[0].n + 1 }); }\n",
        ),
        (
            "jobs/broken.yaml",
            "label: Broken\nschedule: every 1w\nscript: |\n  \
             create(\"tally\", #{ n: 100 });\n  \
             throw \"the books do not balance\";\n",
        ),
        (
            "alerts/still_open.yaml",
            "label: Still open\nentity: ticket\nschedule: every 10m\n\
             filter: {open: true}\nrecipients: [{field: owner}]\n\
             message: \"{{ record.title }} is still open\"\nrepeat_after: 1h\n",
        ),
    ])
}

struct World {
    store: Store,
    catalog: Arc<Catalog>,
    writer: RecordWriter,
    scheduler: Scheduler,
    alice: i64,
    admin: i64,
}

impl World {
    async fn new(store: Store) -> World {
        let m = app();
        trellis_runtime::serve::prepare(&store, &m, Some("admin-pass-1"))
            .await
            .expect("prepares");
        let alice = create_user(
            &store,
            AccountChange {
                username: Some("alice".into()),
                password: Some("password-1".into()),
                ..AccountChange::default()
            },
        )
        .await
        .expect("alice");
        let catalog = Arc::new(Catalog::new(&m));
        let reader = Arc::new(RecordReader::new(store.clone(), catalog.clone()));
        let scheduler = Scheduler::new(&m, catalog.clone(), store.clone(), reader);
        let admin = common::texts(
            &store,
            "SELECT CAST(id AS TEXT) FROM trellis_users WHERE username = 'admin'",
        )
        .await[0]
            .clone()
            .and_then(|t| t.parse().ok())
            .expect("the admin");
        World {
            writer: RecordWriter::new(store.clone(), catalog.clone()),
            catalog,
            store,
            scheduler,
            alice,
            admin,
        }
    }

    async fn ticket(&self, title: &str, open: bool) -> i64 {
        let entity = self.catalog.entity("ops", "ticket").expect("ticket");
        let values: Map<String, Json> = json!({"title": title, "open": open, "owner": self.alice})
            .as_object()
            .cloned()
            .expect("an object");
        self.writer
            .create(&entity, values, &Actor::system(), &Access::everything())
            .await
            .expect("creates")
            .id
    }

    async fn set_open(&self, id: i64, open: bool) {
        let entity = self.catalog.entity("ops", "ticket").expect("ticket");
        let version = count(
            &self.store,
            &format!("SELECT version FROM ops__ticket WHERE id = {id}"),
        )
        .await;
        let patch = json!({"open": open})
            .as_object()
            .cloned()
            .expect("an object");
        self.writer
            .update(
                &entity,
                id,
                version,
                patch,
                &Actor::system(),
                &Access::everything(),
            )
            .await
            .expect("updates");
    }

    /// Alice's notifications whose message ends with `suffix`.
    async fn told(&self, suffix: &str) -> i64 {
        count(
            &self.store,
            &format!(
                "SELECT COUNT(*) FROM trellis_notifications \
                 WHERE user_id = {} AND message LIKE '%{suffix}'",
                self.alice
            ),
        )
        .await
    }

    async fn run_now(&self, name: &str) -> Report {
        self.scheduler
            .run_now(name, self.admin)
            .await
            .expect("runs")
            .expect("the item exists")
    }
}

fn report(matched: i64, notified: i64) -> Report {
    Report {
        matched,
        notified,
        ..Report::default()
    }
}

#[tokio::test]
async fn an_alert_tells_once_per_occurrence_and_records_each_run() {
    each_backend("alert_occurrences", async |store: Store| {
        let w = World::new(store).await;
        let first = w.ticket("Pump broken", true).await;
        w.ticket("Valve leaking", true).await;
        w.ticket("Closed long ago", false).await;

        assert_eq!(w.run_now("ops.open_ticket").await, report(2, 2));
        assert_eq!(w.told(" is open").await, 2);
        // Still matching: the same occurrences, nobody is told again.
        assert_eq!(w.run_now("ops.open_ticket").await, report(2, 0));
        assert_eq!(w.told(" is open").await, 2);
        // The record stops matching, which ends its occurrence; matching
        // again is a new one.
        w.set_open(first, false).await;
        assert_eq!(w.run_now("ops.open_ticket").await, report(1, 0));
        w.set_open(first, true).await;
        assert_eq!(w.run_now("ops.open_ticket").await, report(2, 1));
        assert_eq!(w.told(" is open").await, 3);

        let runs = count(
            &w.store,
            &format!(
                "SELECT COUNT(*) FROM trellis_job_runs WHERE name = 'ops.open_ticket' \
                 AND manual_by = {} AND result = 'ok' AND finished_at IS NOT NULL",
                w.admin
            ),
        )
        .await;
        assert_eq!(runs, 4, "every run is recorded with who asked for it");
        let matched = count(
            &w.store,
            "SELECT CAST(SUM(matched) AS BIGINT) FROM trellis_job_runs WHERE name = 'ops.open_ticket'",
        )
        .await;
        assert_eq!(matched, 7);
        assert!(w.scheduler.run_now("ops.no_such_alert", w.admin).await.expect("runs").is_none());
    })
    .await;
}

#[tokio::test]
async fn ticks_run_what_is_due_once_and_repeat_after_the_interval() {
    each_backend("alert_ticks", async |store: Store| {
        let w = World::new(store).await;
        w.ticket("Pump broken", true).await;
        w.ticket("Valve leaking", true).await;
        let start: DateTime<Utc> = "2026-12-07T08:03:00Z".parse().expect("a time");
        w.scheduler.register(start).await.expect("registers");

        assert!(
            w.scheduler.tick(start).await.expect("ticks").is_empty(),
            "nothing due yet"
        );
        let due = start + Duration::minutes(7);
        let mut ran = w.scheduler.tick(due).await.expect("ticks");
        ran.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            ran,
            vec![
                ("ops.count".to_owned(), report(0, 0)),
                ("ops.open_ticket".to_owned(), report(2, 2)),
                ("ops.still_open".to_owned(), report(2, 2)),
            ]
        );
        assert!(
            w.scheduler.tick(due).await.expect("ticks").is_empty(),
            "claimed once"
        );
        // Within the hour, `still_open` stays quiet; after it, it tells again.
        let ran = w
            .scheduler
            .tick(due + Duration::minutes(30))
            .await
            .expect("ticks");
        assert!(
            ran.contains(&("ops.still_open".to_owned(), report(2, 0))),
            "{ran:?}"
        );
        let ran = w
            .scheduler
            .tick(due + Duration::minutes(61))
            .await
            .expect("ticks");
        assert!(
            ran.contains(&("ops.still_open".to_owned(), report(2, 2))),
            "{ran:?}"
        );
        assert_eq!(w.told(" is open").await, 2);
        assert_eq!(w.told(" is still open").await, 4);
        let due_times = common::texts(
            &w.store,
            "SELECT CAST(due_at AS TEXT) FROM trellis_job_runs \
             WHERE name = 'ops.open_ticket' ORDER BY id",
        )
        .await;
        assert_eq!(due_times.len(), 3, "{due_times:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_ticking_together_run_each_due_time_exactly_once() {
    each_backend("alert_two_nodes", async |store: Store| {
        let w = World::new(store.clone()).await;
        w.ticket("Pump broken", true).await;
        let m = app();
        let catalog = Arc::new(Catalog::new(&m));
        let reader = Arc::new(RecordReader::new(store.clone(), catalog.clone()));
        let other = Scheduler::new(&m, catalog.clone(), store.clone(), reader);
        let start: DateTime<Utc> = "2026-12-07T08:00:30Z".parse().expect("a time");
        w.scheduler.register(start).await.expect("registers");
        other.register(start).await.expect("registers twice");
        const TICKS: i64 = 12;
        let mut ran = 0;
        for k in 1..=TICKS {
            let now = start + Duration::minutes(10 * k);
            let (a, b) = tokio::join!(w.scheduler.tick(now), other.tick(now));
            ran += a.expect("node a ticks").len() + b.expect("node b ticks").len();
        }
        assert_eq!(
            ran as i64,
            3 * TICKS,
            "two alerts and a job, one run per due time"
        );
        let runs = count(&store, "SELECT COUNT(*) FROM trellis_job_runs").await;
        let distinct = count(
            &store,
            "SELECT COUNT(*) FROM (SELECT DISTINCT name, due_at FROM trellis_job_runs) AS d",
        )
        .await;
        assert_eq!((runs, distinct), (3 * TICKS, 3 * TICKS));
        assert_eq!(
            count(&store, "SELECT n FROM ops__tally").await,
            TICKS,
            "the job ran once a tick"
        );
        assert_eq!(
            w.told(" is open").await,
            1,
            "one occurrence, one notification"
        );
        // Every two hours of ticks, `still_open` repeats: at 0, 60 and 120 minutes.
        assert_eq!(w.told(" is still open").await, 2);
    })
    .await;
}

#[tokio::test]
async fn a_job_writes_through_the_record_api_or_nothing_at_all() {
    each_backend("jobs", async |store: Store| {
        let w = World::new(store).await;
        assert_eq!(w.run_now("ops.count").await, report(0, 0));
        assert_eq!(w.run_now("ops.count").await, report(0, 0));
        assert_eq!(count(&w.store, "SELECT n FROM ops__tally").await, 2);
        // A job that fails leaves nothing behind, and its run says why and where.
        let failed = w.run_now("ops.broken").await;
        let error = failed.error.expect("failed");
        assert!(
            error.contains("job `ops.broken` (jobs/broken.yaml:5)")
                && error.contains("the books do not balance"),
            "{error}"
        );
        assert_eq!(count(&w.store, "SELECT COUNT(*) FROM ops__tally").await, 1);
        let recorded = count(
            &w.store,
            "SELECT COUNT(*) FROM trellis_job_runs WHERE name = 'ops.broken' \
             AND result = 'failed' AND error LIKE '%do not balance%'",
        )
        .await;
        assert_eq!(recorded, 1);
    })
    .await;
}
