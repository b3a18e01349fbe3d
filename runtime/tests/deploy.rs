//! Schema deployment on SQLite and PostgreSQL: models become typed tables, and
//! later models evolve them without losing data.

mod common;

use common::{count, each_backend, exec, model, texts};
use trellis_runtime::deploy::{StepKind, deployed_layout};
use trellis_runtime::{deploy_model, plan_model};

const APP: &str = "name: shop\nlabel: Shop\n";

fn customer(extra_fields: &str) -> String {
    format!(
        "label: Customer\ntitle: name\nfields:\n  name: {{type: text, required: true}}\n  market:\n    type: select\n    options: [domestic, foreign]\n  credit_code: {{type: text}}\n  credit_limit: {{type: money}}\n  since: {{type: date}}\n  lines:\n    type: table\n    fields:\n      item: {{type: text}}\n      qty: {{type: integer}}\n{extra_fields}unique:\n  - fields: [credit_code]\n    when: {{market: domestic}}\n"
    )
}

#[tokio::test]
async fn deploying_creates_typed_tables_and_records_a_revision() {
    each_backend("creates_tables", async |store| {
        let m = model(&[("app.yaml", APP), ("entities/customer.yaml", &customer(""))]);
        let plan = deploy_model(&store, &m, false).await.expect("deploys");
        let text = plan.to_string();
        assert!(text.contains("create table shop__customer"), "{text}");
        assert!(text.contains("create table shop__customer__lines"), "{text}");
        assert!(text.contains("create table trellis_revisions"), "{text}");
        assert!(text.contains("create unique index shop__customer__credit_code_key"), "{text}");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM trellis_revisions").await, 1);
        exec(&store, "INSERT INTO shop__customer (version, created_at, updated_at, name, credit_limit) VALUES (1, ?, ?, ?, ?)", vec![ts(&store), ts(&store), "Acme".into(), money(&store, "1200.50")]).await.expect("insert");
        // A second deployment of the same model has nothing to do and records nothing.
        let again = deploy_model(&store, &m, false).await.expect("deploys again");
        assert!(again.steps.is_empty(), "{again}");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM trellis_revisions").await, 1);
    })
    .await;
}

#[tokio::test]
async fn adding_a_field_adds_a_column_and_keeps_the_rows() {
    each_backend("adds_column", async |store| {
        let v1 = model(&[("app.yaml", APP), ("entities/customer.yaml", &customer(""))]);
        deploy_model(&store, &v1, false).await.expect("v1");
        exec(&store, "INSERT INTO shop__customer (version, created_at, updated_at, name) VALUES (1, ?, ?, ?)", vec![ts(&store), ts(&store), "Acme".into()]).await.expect("insert");
        let v2 = model(&[("app.yaml", APP), ("entities/customer.yaml", &customer("  region: {type: text, index: true}\n"))]);
        let plan = deploy_model(&store, &v2, false).await.expect("v2");
        let descriptions: Vec<&str> = plan.steps.iter().map(|s| s.description.as_str()).collect();
        assert_eq!(descriptions, ["add column shop__customer.region", "create index shop__customer__region_idx on shop__customer (region, id)"]);
        assert_eq!(texts(&store, "SELECT name FROM shop__customer").await, [Some("Acme".to_owned())]);
        exec(&store, "UPDATE shop__customer SET region = ?", vec!["east".into()]).await.expect("the new column is writable");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM trellis_revisions").await, 2);
    })
    .await;
}

#[tokio::test]
async fn removing_a_field_keeps_its_column_and_data_unless_destruction_is_allowed() {
    each_backend("keeps_column", async |store| {
        let with_region = model(&[("app.yaml", APP), ("entities/customer.yaml", &customer("  region: {type: text}\n"))]);
        let without = model(&[("app.yaml", APP), ("entities/customer.yaml", &customer(""))]);
        deploy_model(&store, &with_region, false).await.expect("v1");
        exec(&store, "INSERT INTO shop__customer (version, created_at, updated_at, name, region) VALUES (1, ?, ?, ?, ?)", vec![ts(&store), ts(&store), "Acme".into(), "east".into()]).await.expect("insert");

        let plan = deploy_model(&store, &without, false).await.expect("v2 keeps");
        assert_eq!(plan.steps.len(), 1);
        assert_eq!(plan.steps[0].kind, StepKind::Keep);
        assert!(plan.steps[0].sql.is_empty());
        assert_eq!(texts(&store, "SELECT region FROM shop__customer").await, [Some("east".to_owned())]);
        // The kept column is remembered: adding the field back finds its data.
        let back = deploy_model(&store, &with_region, false).await.expect("v3");
        assert!(back.steps.iter().all(|s| s.sql.is_empty()), "{back}");

        let plan = plan_model(&store, &without, true).await.expect("plans");
        assert!(plan.steps.iter().any(|s| s.kind == StepKind::Destructive && s.description.contains("drop column shop__customer.region")), "{plan}");
        deploy_model(&store, &without, true).await.expect("destroys");
        assert!(exec(&store, "SELECT region FROM shop__customer", vec![]).await.is_err(), "the column is gone");
        assert!(!deployed_layout(&store).await.expect("layout").tables["shop__customer"].columns.contains_key("region"));
    })
    .await;
}

#[tokio::test]
async fn a_conditional_unique_key_is_a_partial_unique_index() {
    each_backend("partial_unique", async |store| {
        let m = model(&[("app.yaml", APP), ("entities/customer.yaml", &customer(""))]);
        deploy_model(&store, &m, false).await.expect("deploys");
        let insert = "INSERT INTO shop__customer (version, created_at, updated_at, name, market, credit_code) VALUES (1, ?, ?, ?, ?, ?)";
        for (name, market) in [("A", "foreign"), ("B", "foreign"), ("C", "domestic")] {
            exec(&store, insert, vec![ts(&store), ts(&store), name.into(), market.into(), "91310000X".into()]).await.expect("only one domestic so far");
        }
        let duplicate = exec(&store, insert, vec![ts(&store), ts(&store), "D".into(), "domestic".into(), "91310000X".into()]).await;
        assert!(duplicate.is_err(), "a second domestic customer with the same credit code is refused");
    })
    .await;
}

#[tokio::test]
async fn a_failing_deployment_changes_nothing() {
    each_backend("failing_deploy", async |store| {
        let v1 = model(&[("app.yaml", APP), ("entities/customer.yaml", &customer(""))]);
        deploy_model(&store, &v1, false).await.expect("v1");
        for name in ["Acme", "Acme"] {
            exec(&store, "INSERT INTO shop__customer (version, created_at, updated_at, name) VALUES (1, ?, ?, ?)", vec![ts(&store), ts(&store), name.into()]).await.expect("insert");
        }
        // v2 adds a column, then a unique index the existing rows violate.
        let v2 = customer("  region: {type: text}\n").replace("name: {type: text, required: true}", "name: {type: text, required: true, unique: true}");
        let v2 = model(&[("app.yaml", APP), ("entities/customer.yaml", &v2)]);
        let err = deploy_model(&store, &v2, false).await.expect_err("the unique index cannot be built");
        assert!(err.to_string().contains("nothing was changed"), "{err}");
        assert!(exec(&store, "SELECT region FROM shop__customer", vec![]).await.is_err(), "the added column was rolled back");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM trellis_revisions").await, 1);
    })
    .await;
}

#[tokio::test]
async fn changing_a_stored_type_is_refused_before_anything_runs() {
    each_backend("type_change", async |store| {
        let v1 = model(&[
            ("app.yaml", APP),
            (
                "entities/customer.yaml",
                &customer("  rank: {type: text}\n"),
            ),
        ]);
        deploy_model(&store, &v1, false).await.expect("v1");
        let v2 = model(&[
            ("app.yaml", APP),
            (
                "entities/customer.yaml",
                &customer("  rank: {type: integer}\n"),
            ),
        ]);
        let err = deploy_model(&store, &v2, false).await.expect_err("refused");
        assert!(
            err.to_string()
                .contains("shop__customer.rank changes from Text to Integer"),
            "{err}"
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM trellis_revisions").await,
            1
        );
    })
    .await;
}

#[tokio::test]
async fn the_example_app_deploys() {
    each_backend("example_app", async |store| {
        let m = common::checked(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/leave"),
        );
        let plan = deploy_model(&store, &m, false).await.expect("deploys");
        assert!(
            plan.steps.iter().all(|s| s.kind == StepKind::Safe),
            "{plan}"
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM leave__leave_request").await,
            0
        );
    })
    .await;
}

/// A timestamp in the column form of the store.
fn ts(store: &trellis_runtime::Store) -> sea_orm::Value {
    match store.dialect() {
        trellis_runtime::Dialect::Sqlite => trellis_runtime::store::now_text().into(),
        trellis_runtime::Dialect::Postgres => chrono::Utc::now().into(),
    }
}

/// Money in the column form of the store: minor units on SQLite, NUMERIC on PostgreSQL.
fn money(store: &trellis_runtime::Store, text: &str) -> sea_orm::Value {
    let value: rust_decimal::Decimal = text.parse().expect("decimal");
    match store.dialect() {
        trellis_runtime::Dialect::Sqlite => {
            trellis_runtime::store::filter_sql::minor_units(&value, 2)
                .expect("two decimals")
                .into()
        }
        trellis_runtime::Dialect::Postgres => value.into(),
    }
}
