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

        let first = load_demo(&model, &reader, &writer).await.expect("loads");
        assert_eq!(
            first,
            [DemoOutcome::Loaded {
                app: "leave".into(),
                records: 4
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

        let again = load_demo(&model, &reader, &writer).await.expect("runs");
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
