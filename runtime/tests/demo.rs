//! Demo data on SQLite and PostgreSQL: loaded through the pipeline once, with
//! `$key` links resolved to the ids of records loaded before.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{checked, count, each_backend};
use trellis_runtime::demo::{DemoOutcome, load_demo};
use trellis_runtime::{Access, Catalog, ListQuery, RecordReader, RecordWriter, deploy_model};

#[tokio::test]
async fn demo_records_load_once_with_their_links() {
    each_backend("demo", async |store| {
        let model = checked(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/leave"));
        deploy_model(&store, &model, false).await.expect("deploys");
        let catalog = Arc::new(Catalog::new(&model));
        let reader = RecordReader::new(store.clone(), catalog.clone());
        let writer = RecordWriter::new(store.clone(), catalog.clone());

        let first = load_demo(&model, &reader, &writer, "demo-password")
            .await
            .expect("loads");
        assert_eq!(
            first,
            [DemoOutcome::Loaded {
                app: "leave".into(),
                records: 4,
                accounts: 0,
            }]
        );
        let types = catalog.entity("leave", "leave_type").expect("leave_type");
        let page = reader
            .list(&types, &ListQuery::default(), &Access::everything())
            .await
            .expect("lists");
        let by_code = |code: &str| {
            page.records
                .iter()
                .find(|r| r.values["code"] == code)
                .unwrap_or_else(|| panic!("{code} is loaded"))
        };
        assert_eq!(
            by_code("SICK_LONG").values["parent"],
            serde_json::json!(by_code("SICK").id),
            "`$sick` is the id of the record keyed `sick`"
        );

        let again = load_demo(&model, &reader, &writer, "demo-password")
            .await
            .expect("runs");
        assert_eq!(
            again,
            [DemoOutcome::Skipped {
                app: "leave".into()
            }]
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM leave__leave_type").await,
            4
        );
    })
    .await;
}

/// The bundled apps' demo data loads whole: every record of every data file,
/// links to records of another app by `$key`, and records in the workflow
/// state they give, so the dashboards have a business in progress to show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundled_apps_demo_loads_whole_with_its_states() {
    each_backend("demo_bundled", async |store| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../apps");
        let report = trellis_engine::check(&[root.join("crm"), root.join("order")]);
        let model = report
            .model
            .unwrap_or_else(|| panic!("{}", report.diagnostics.render()));
        deploy_model(&store, &model, false).await.expect("deploys");
        let catalog = Arc::new(Catalog::new(&model));
        let reader = RecordReader::new(store.clone(), catalog.clone());
        let writer = RecordWriter::new(store.clone(), catalog.clone());
        let loaded = load_demo(&model, &reader, &writer, "demo-password")
            .await
            .expect("loads");
        assert_eq!(loaded.len(), 2, "{loaded:?}");
        let accounts: usize = loaded
            .iter()
            .map(|o| match o {
                DemoOutcome::Loaded { accounts, .. } => *accounts,
                DemoOutcome::Skipped { .. } => 0,
            })
            .sum();
        assert!(accounts > 0, "the demo has its people: {loaded:?}");
        // Records name the demo accounts, so "my data" and rankings by owner show something.
        let owners = count(&store, "SELECT COUNT(DISTINCT owner) FROM crm__customer").await;
        assert!(owners > 1, "customers of {owners} owner(s)");
        let portal = count(
            &store,
            "SELECT COUNT(*) FROM trellis_user_roles WHERE role IN ('customer', 'dealer')",
        )
        .await;
        assert!(portal > 0, "a portal account of a customer company");

        let mut in_states = 0;
        for app in model.apps() {
            for file in app.data.values() {
                let Some(entity) = &file.value.entity else {
                    continue;
                };
                let (app_name, entity) = trellis_engine::check::split_ref(&app.name(), entity);
                let entity = catalog.entity(&app_name, &entity).expect("entity");
                let table = &entity.table;
                let given = file.value.records.len() as i64;
                let stored = count(&store, &format!("SELECT COUNT(*) FROM {table}")).await;
                assert!(stored >= given, "{table}: {stored} of {given} records");
                let Some(field) = &entity.state_field else {
                    continue;
                };
                for state in file.value.records.iter().filter_map(|r| r.get(field)) {
                    let state = state.as_str().expect("a state name");
                    let n = count(
                        &store,
                        &format!("SELECT COUNT(*) FROM {table} WHERE {field} = '{state}'"),
                    )
                    .await;
                    assert!(n > 0, "{table}: no record in `{state}`");
                    in_states += 1;
                }
            }
        }
        assert!(
            in_states > 0,
            "the demo shows records past their first state"
        );
    })
    .await;
}
