//! Upserts by an external key on SQLite and PostgreSQL: rows update their
//! match or create a record through the write pipeline; all or nothing, or
//! row by row; never across the caller's rows.

mod common;

use std::sync::Arc;

use common::{count, each_backend, model, texts};
use serde_json::{Map, Value as Json, json};
use trellis_engine::model::Filter;
use trellis_runtime::catalog::EntityModel;
use trellis_runtime::write::upsert::{UpsertAccess, UpsertMode, Upserted};
use trellis_runtime::{Access, Actor, Catalog, RecordError, RecordWriter, Store, deploy_model};

const APP: &str = "name: erp\nlabel: ERP\n";

const ORDER: &str = r#"
label: Order
title: external_no
fields:
  external_no: {type: text, required: true}
  customer: {type: text, required: true}
  amount: {type: money, min: 0}
  due: {type: date, default: $today}
  owner: {type: integer}
  secret: {type: text}
unique:
  - fields: [external_no]
    normalize: true
"#;

struct Fixture {
    writer: RecordWriter,
    order: Arc<EntityModel>,
}

async fn fixture(store: &Store) -> Fixture {
    let m = model(&[("app.yaml", APP), ("entities/order.yaml", ORDER)]);
    deploy_model(store, &m, false).await.expect("deploys");
    let catalog = Arc::new(Catalog::new(&m));
    Fixture {
        writer: RecordWriter::new(store.clone(), catalog.clone()),
        order: catalog.entity("erp", "order").expect("order"),
    }
}

fn rows(v: Json) -> Vec<Map<String, Json>> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|r| r.as_object().cloned().expect("an object"))
        .collect()
}

fn key(fields: &[&str]) -> Vec<String> {
    fields.iter().map(|f| (*f).to_owned()).collect()
}

fn both(access: &Access) -> UpsertAccess<'_> {
    UpsertAccess {
        create: Some(access),
        update: Some(access),
    }
}

async fn seed(f: &Fixture, values: Json) -> i64 {
    let input = values.as_object().cloned().expect("an object");
    f.writer
        .create(&f.order, input, &Actor::user(1), &Access::everything())
        .await
        .expect("seeded")
        .id
}

/// The codes of a failed row's errors.
fn codes(outcome: &Result<Upserted, RecordError>) -> Vec<String> {
    match outcome {
        Err(e) => e.to_field_errors().into_iter().map(|e| e.code).collect(),
        Ok(done) => panic!("expected a failure, got {done:?}"),
    }
}

#[tokio::test]
async fn creates_new_rows_and_updates_existing_ones_by_key() {
    each_backend("upsert_both", async |store| {
        let f = fixture(&store).await;
        let first = seed(&f, json!({"external_no": "ERP-1", "customer": "Acme", "amount": "10"})).await;
        let all = Access::everything();
        let done = f
            .writer
            .upsert_many(
                &f.order,
                &key(&["external_no"]),
                // The key compares as the `normalize` unique key does: ` erp-1` is ERP-1.
                rows(json!([
                    {"external_no": " erp-1", "amount": "12.50"},
                    {"external_no": "ERP-2", "customer": "Globex", "amount": 3},
                ])),
                UpsertMode::AllOrNothing,
                &Actor::user(5),
                both(&all),
            )
            .await
            .expect("upserted");
        let second = match done[..] {
            [Ok(Upserted::Updated(id)), Ok(Upserted::Created(second))] if id == first => second,
            _ => panic!("{done:?}"),
        };
        // The update is a patch on the found record's version; the key is not changed.
        assert_eq!(
            texts(&store, &format!("SELECT CAST(external_no || '|' || customer || '|' || version AS TEXT) FROM erp__order WHERE id = {first}")).await,
            [Some("ERP-1|Acme|2".to_owned())]
        );
        // The create ran the pipeline: coercion and defaults.
        assert_eq!(
            count(&store, &format!("SELECT COUNT(*) FROM erp__order WHERE id = {second} AND due IS NOT NULL AND created_by = 5")).await,
            1
        );
        let operations = texts(&store, "SELECT operation FROM trellis_audit WHERE entity = 'order' ORDER BY id").await;
        assert_eq!(operations, [Some("create".into()), Some("update".into()), Some("create".into())]);
        let changes = texts(&store, "SELECT changes FROM trellis_audit WHERE operation = 'update'").await;
        let changes: Json = serde_json::from_str(changes[0].as_deref().expect("changes")).expect("JSON");
        assert_eq!(changes, json!({"amount": ["10.00", "12.50"]}));
    })
    .await;
}

#[tokio::test]
async fn all_or_nothing_writes_nothing_and_names_every_failed_row() {
    each_backend("upsert_all_or_nothing", async |store| {
        let f = fixture(&store).await;
        seed(
            &f,
            json!({"external_no": "ERP-1", "customer": "Acme", "amount": "10"}),
        )
        .await;
        let err = f
            .writer
            .upsert_many(
                &f.order,
                &key(&["external_no"]),
                rows(json!([
                    {"external_no": "ERP-2", "customer": "Globex"},
                    {"external_no": "ERP-1", "amount": -5},
                    {"external_no": "ERP-3"},
                ])),
                UpsertMode::AllOrNothing,
                &Actor::user(5),
                both(&Access::everything()),
            )
            .await
            .expect_err("two rows are invalid");
        let RecordError::Rows(failed) = &err else {
            panic!("{err}")
        };
        let found: Vec<(usize, String, String)> = failed
            .iter()
            .flat_map(|(row, e)| {
                e.field_errors()
                    .iter()
                    .map(|fe| (*row, fe.field.clone(), fe.code.clone()))
            })
            .collect();
        assert_eq!(
            found,
            [
                (1, "amount".into(), "min".into()),
                (2, "customer".into(), "required".into())
            ]
        );
        assert_eq!(count(&store, "SELECT COUNT(*) FROM erp__order").await, 1);
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM erp__order WHERE version = 1").await,
            1
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM trellis_audit").await,
            1,
            "only the seed's"
        );
    })
    .await;
}

#[tokio::test]
async fn per_row_writes_the_good_rows_and_reports_the_bad() {
    each_backend("upsert_per_row", async |store| {
        let f = fixture(&store).await;
        seed(&f, json!({"external_no": "ERP-1", "customer": "Acme", "amount": "10"})).await;
        let fourth = seed(&f, json!({"external_no": "ERP-4", "customer": "Acme", "amount": "4"})).await;
        let done = f
            .writer
            .upsert_many(
                &f.order,
                &key(&["external_no"]),
                rows(json!([
                    {"external_no": "ERP-2", "customer": "Globex"},
                    {"external_no": "ERP-1", "amount": -5},
                    {"external_no": "ERP-3"},
                    {"external_no": "ERP-4", "customer": "Acme Ltd"},
                ])),
                UpsertMode::PerRow,
                &Actor::user(5),
                both(&Access::everything()),
            )
            .await
            .expect("answers row by row");
        assert!(matches!(done[0], Ok(Upserted::Created(_))), "{done:?}");
        assert_eq!(codes(&done[1]), ["min"]);
        assert_eq!(codes(&done[2]), ["required"]);
        assert!(matches!(done[3], Ok(Upserted::Updated(id)) if id == fourth), "{done:?}");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM erp__order").await, 3);
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM erp__order WHERE external_no = 'ERP-1' AND version = 1").await,
            1,
            "the refused row left its record as it was"
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM erp__order WHERE customer = 'Acme Ltd' AND amount IS NOT NULL AND version = 2").await,
            1,
            "the good one changed its record, keeping the fields it did not send"
        );
    })
    .await;
}

#[tokio::test]
async fn a_key_outside_the_callers_rows_is_refused_never_updated_nor_named() {
    each_backend("upsert_outside_rows", async |store| {
        let f = fixture(&store).await;
        let theirs = seed(
            &f,
            json!({"external_no": "ERP-9", "customer": "Secret Co", "owner": 1}),
        )
        .await;
        let actor = Actor::user(2);
        let mine = Access::rows(
            Filter(
                json!({"owner": "$user.id"})
                    .as_object()
                    .cloned()
                    .expect("a map"),
            ),
            &actor,
        );
        for mode in [UpsertMode::PerRow, UpsertMode::AllOrNothing] {
            let outcome = f
                .writer
                .upsert_many(
                    &f.order,
                    &key(&["external_no"]),
                    rows(json!([{"external_no": "ERP-9", "customer": "Mine", "owner": 2}])),
                    mode,
                    &actor,
                    both(&mine),
                )
                .await;
            let errors = match outcome {
                Ok(done) => done[0].as_ref().expect_err("refused").to_field_errors(),
                Err(e @ RecordError::Rows(_)) => e.to_field_errors(),
                Err(e) => panic!("{e}"),
            };
            assert_eq!(errors.len(), 1);
            assert_eq!(
                (errors[0].field.as_str(), errors[0].code.as_str()),
                ("external_no", "unique")
            );
            let said = errors[0].message.clone();
            assert!(
                !said.contains("Secret") && !said.contains(&theirs.to_string()),
                "{said}"
            );
        }
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM erp__order").await,
            1,
            "no second ERP-9"
        );
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM erp__order WHERE customer = 'Secret Co' AND version = 1"
            )
            .await,
            1,
            "theirs is untouched"
        );
    })
    .await;
}

#[tokio::test]
async fn repeated_keys_in_one_request_are_all_refused() {
    each_backend("upsert_repeated", async |store| {
        let f = fixture(&store).await;
        let done = f
            .writer
            .upsert_many(
                &f.order,
                &key(&["external_no"]),
                rows(json!([
                    {"external_no": "ERP-5", "customer": "A"},
                    {"external_no": "ERP-6", "customer": "B"},
                    {"external_no": "erp-5 ", "customer": "C"},
                ])),
                UpsertMode::PerRow,
                &Actor::user(5),
                both(&Access::everything()),
            )
            .await
            .expect("answers row by row");
        assert_eq!(codes(&done[0]), ["duplicate_key"]);
        assert_eq!(codes(&done[2]), ["duplicate_key"]);
        let message = &done[0].as_ref().expect_err("refused").to_field_errors()[0].message;
        assert!(message.contains("rows 0, 2"), "{message}");
        assert!(matches!(done[1], Ok(Upserted::Created(_))), "{done:?}");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM erp__order").await, 1);
    })
    .await;
}

#[tokio::test]
async fn bad_keys_and_missing_permissions_are_refused() {
    each_backend("upsert_bad_keys", async |store| {
        let f = fixture(&store).await;
        seed(&f, json!({"external_no": "ERP-1", "customer": "Acme"})).await;
        seed(&f, json!({"external_no": "ERP-2", "customer": "Acme"})).await;
        let all = Access::everything();
        let masked = Access::everything().hiding(["secret".to_owned()]);
        let upsert = async |fields: &[&str], input: Json, access: UpsertAccess<'_>| {
            f.writer
                .upsert_many(
                    &f.order,
                    &key(fields),
                    rows(input),
                    UpsertMode::PerRow,
                    &Actor::user(5),
                    access,
                )
                .await
        };
        let one = json!([{"external_no": "ERP-3", "customer": "Acme", "secret": "x"}]);
        // Unknown, hidden (unknown to the caller), several-valued or repeated key fields; no key.
        for (fields, access, code) in [
            (&["nope"][..], both(&all), "unknown_field"),
            (&["secret"][..], both(&masked), "unknown_field"),
            (&["customer", "customer"][..], both(&all), "duplicate"),
            (&[][..], both(&all), "required"),
        ] {
            let err = upsert(fields, one.clone(), access)
                .await
                .expect_err("a bad key");
            assert!(matches!(err, RecordError::Invalid(_)), "{err}");
            assert_eq!(err.field_errors()[0].code, code, "{fields:?}: {err}");
        }
        // A key that matches several records, or a row without the key's value.
        let done = upsert(
            &["customer"],
            json!([{"customer": "Acme", "amount": 1}, {"amount": 2}]),
            both(&all),
        )
        .await
        .expect("answers row by row");
        assert_eq!(codes(&done[0]), ["ambiguous_key"]);
        assert_eq!(codes(&done[1]), ["required"]);
        // Each half needs its permission.
        let only_create = UpsertAccess {
            create: Some(&all),
            update: None,
        };
        let only_update = UpsertAccess {
            create: None,
            update: Some(&all),
        };
        let done = upsert(
            &["external_no"],
            json!([{"external_no": "ERP-1", "customer": "X"}]),
            only_create,
        )
        .await
        .expect("answers");
        assert_eq!(codes(&done[0]), ["forbidden"]);
        let done = upsert(
            &["external_no"],
            json!([{"external_no": "ERP-7", "customer": "X"}]),
            only_update,
        )
        .await
        .expect("answers");
        assert_eq!(codes(&done[0]), ["forbidden"]);
        let neither = UpsertAccess {
            create: None,
            update: None,
        };
        let err = upsert(&["external_no"], one.clone(), neither)
            .await
            .expect_err("no permission");
        assert!(matches!(err, RecordError::Refused(_)), "{err}");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM erp__order").await, 2);
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM erp__order WHERE version > 1").await,
            0
        );
    })
    .await;
}
