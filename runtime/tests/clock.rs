//! A store's clock is the one its record logic reads: defaults and `$today`
//! in filters follow a store set to another date, while another store on the
//! same database keeps the real one.

mod common;

use std::sync::Arc;

use chrono::NaiveDate;
use common::{each_backend, model};
use serde_json::{Map, json};
use trellis_engine::model::Filter;
use trellis_runtime::{
    Access, Actor, Catalog, Clock, ListQuery, RecordReader, RecordWriter, deploy_model,
};

const TASK: &str =
    "label: Task\nfields:\n  title: {type: text}\n  due: {type: date, default: $today}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_and_filters_read_the_store_clock() {
    each_backend("store_clock", async |store| {
        let m = model(&[
            ("app.yaml", "name: plan\nlabel: Plan\n"),
            ("entities/task.yaml", TASK),
        ]);
        deploy_model(&store, &m, false).await.expect("deploys");
        let catalog = Arc::new(Catalog::new(&m));
        let task = catalog.entity("plan", "task").expect("task");
        let day = NaiveDate::from_ymd_opt(2031, 7, 14).expect("a date");
        let shifted = store.clone().with_clock(Clock::on(day));
        let writer = RecordWriter::new(shifted.clone(), catalog.clone());
        let everything = Access::everything();
        let mut input = Map::new();
        input.insert("title".into(), json!("later"));
        let created = writer
            .create(&task, input, &Actor::system(), &everything)
            .await
            .expect("created");
        // Around midnight the clock's date may have moved on by a day.
        let due = created.values["due"].as_str().expect("a date").to_owned();
        assert!(due == "2031-07-14" || due == "2031-07-15", "{due}");

        // Due by the end of "today": yes on the store's clock, not (yet) on the real one.
        let due_by_today = ListQuery {
            filter: Some(Filter(
                json!({"due": {"lt": "$today+1d"}})
                    .as_object()
                    .expect("an object")
                    .clone(),
            )),
            ..ListQuery::default()
        };
        let on_that_day = RecordReader::new(shifted, catalog.clone())
            .list(&task, &due_by_today, &everything)
            .await
            .expect("lists");
        assert_eq!(on_that_day.records.len(), 1);
        let real = RecordReader::new(store.clone(), catalog)
            .list(&task, &due_by_today, &everything)
            .await
            .expect("lists");
        assert!(
            real.records.is_empty(),
            "on the real clock 2031 is not due yet"
        );
    })
    .await;
}
