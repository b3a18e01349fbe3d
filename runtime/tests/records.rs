//! The write pipeline on SQLite and PostgreSQL: what it stores, what it refuses,
//! and that it never leaves half a write behind.

mod common;

use std::sync::Arc;

use common::{count, each_backend, model, texts};
use serde_json::{Map, Value as Json, json};
use trellis_runtime::catalog::EntityModel;
use trellis_runtime::{Access, Actor, Catalog, RecordError, RecordWriter, Store, deploy_model};

const APP: &str = "name: sales\nlabel: Sales\n";

const CUSTOMER: &str = r#"
label: Customer
title: name
fields:
  name: {type: text, required: true, max_length: 80}
  market: {type: select, options: [domestic, foreign], default: domestic}
  credit_code: {type: text, required_when: {market: domestic}}
  country: {type: text}
  email: {type: email}
unique:
  - fields: [credit_code]
    when: {market: domestic}
    message: A domestic customer with this credit code exists
  - fields: [name, country, email]
    when: {market: foreign}
    normalize: true
    show: [country, email]
"#;

const ORDER: &str = r#"
label: Order
title: number
fields:
  number: {type: text, read_only: true}
  customer: {type: link, target: customer, required: true, on_delete: cascade}
  due: {type: date, default: $today}
  note: {type: text, min_length: 3}
  total:
    type: money
    computed: lines.reduce(|sum, l| sum + l.amount, 0.0)
  lines:
    type: table
    fields:
      item: {type: text, required: true}
      qty: {type: integer, min: 1}
      price: {type: money}
      amount:
        type: money
        computed: if qty == () || price == () { 0.0 } else { qty * price }
numbering: {field: number, pattern: "SO-{yyyy}-{seq:4}", gap_free: true}
rules:
  - name: not_too_big
    on: validate
    script: total <= 1000000.0
    field: total
    message: An order is at most one million
"#;

const TICKET: &str = r#"
label: Ticket
title: code
fields:
  code: {type: text, read_only: true}
  customer: {type: link, target: customer, on_delete: set_null}
  subject: {type: text}
numbering: {field: code, pattern: "T{seq:6}"}
"#;

const CONTACT: &str = r#"
label: Contact
fields:
  customer: {type: link, target: customer}
  name: {type: text}
"#;

struct Fixture {
    writer: RecordWriter,
    catalog: Arc<Catalog>,
}

impl Fixture {
    fn entity(&self, name: &str) -> Arc<EntityModel> {
        self.catalog.entity("sales", name).expect("entity")
    }
}

async fn fixture(store: &Store) -> Fixture {
    let m = model(&[
        ("app.yaml", APP),
        ("entities/customer.yaml", CUSTOMER),
        ("entities/order.yaml", ORDER),
        ("entities/ticket.yaml", TICKET),
        ("entities/contact.yaml", CONTACT),
    ]);
    deploy_model(store, &m, false).await.expect("deploys");
    let catalog = Arc::new(Catalog::new(&m));
    Fixture {
        writer: RecordWriter::new(store.clone(), catalog.clone()),
        catalog,
    }
}

fn input(v: Json) -> Map<String, Json> {
    v.as_object().cloned().expect("an object")
}

async fn customer(f: &Fixture, name: &str, code: &str) -> i64 {
    let c = f.entity("customer");
    f.writer
        .create(
            &c,
            input(json!({"name": name, "credit_code": code})),
            &Actor::user(7),
            &Access::everything(),
        )
        .await
        .expect("customer")
        .id
}

#[tokio::test]
async fn line_items_round_trip_and_update_by_diff() {
    each_backend("lines_round_trip", async |store| {
        let f = fixture(&store).await;
        let c = customer(&f, "Acme", "91310000A").await;
        let order = f.entity("order");
        let created = f
            .writer
            .create(
                &order,
                input(json!({"customer": c, "lines": [
                    {"item": "pump", "qty": 2, "price": "100.10"},
                    {"item": "valve", "qty": 3, "price": 0.2},
                ]})),
                &Actor::user(7),
                &Access::everything(),
            )
            .await
            .expect("created");
        assert_eq!(created.version, 1);
        assert_eq!(created.values["total"], json!("200.80"));
        assert_eq!(
            created.values["number"]
                .as_str()
                .map(|n| n.starts_with("SO-") && n.ends_with("-0001")),
            Some(true)
        );
        assert_eq!(
            created.values["due"],
            json!(
                chrono::Utc::now()
                    .date_naive()
                    .format("%Y-%m-%d")
                    .to_string()
            )
        );
        assert_eq!(created.values["created_by"], json!(7));
        let lines = created.values["lines"].as_array().expect("lines");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["amount"], json!("0.60"));
        let (pump, valve) = (lines[0]["id"].clone(), lines[1]["id"].clone());

        // Change the pump, drop the valve, add a seal.
        let updated = f
            .writer
            .update(
                &order,
                created.id,
                1,
                input(json!({"lines": [
                    {"id": pump, "item": "pump", "qty": 1, "price": "100.10"},
                    {"item": "seal", "qty": 10, "price": "1.5"},
                ]})),
                &Actor::user(8),
                &Access::everything(),
            )
            .await
            .expect("updated");
        assert_eq!(updated.version, 2);
        assert_eq!(updated.values["total"], json!("115.10"));
        let lines = updated.values["lines"].as_array().expect("lines");
        assert_eq!(
            lines.iter().map(|l| l["item"].clone()).collect::<Vec<_>>(),
            [json!("pump"), json!("seal")]
        );
        assert_eq!(lines[0]["id"], pump, "the kept line keeps its id");
        assert_ne!(lines[1]["id"], valve);
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM sales__order__lines").await,
            2
        );
        assert_eq!(updated.values["updated_by"], json!(8));
        // The audit trail has the create and the update, with old and new values.
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM trellis_audit WHERE entity = 'order'"
            )
            .await,
            2
        );
        let changes = texts(
            &store,
            "SELECT changes FROM trellis_audit WHERE entity = 'order' AND operation = 'update'",
        )
        .await;
        let changes: Json =
            serde_json::from_str(changes[0].as_deref().expect("changes")).expect("JSON");
        assert_eq!(changes["total"], json!(["200.80", "115.10"]));
    })
    .await;
}

#[tokio::test]
async fn an_invalid_record_is_refused_with_every_field_error_and_nothing_written() {
    each_backend("invalid_record", async |store| {
        let f = fixture(&store).await;
        let c = f.entity("customer");
        let err = f
            .writer
            .create(&c, input(json!({"name": "x".repeat(81), "market": "mars", "email": "nope", "vip": true})), &Actor::user(1), &Access::everything())
            .await
            .expect_err("invalid");
        let mut found: Vec<(String, String)> = err.field_errors().iter().map(|e| (e.field.clone(), e.code.clone())).collect();
        found.sort();
        assert_eq!(found, [("email".into(), "format".into()), ("market".into(), "option".into()), ("name".into(), "max_length".into()), ("vip".into(), "unknown_field".into())]);
        // Conditional required: a domestic customer needs a credit code, a foreign one does not.
        let err = f.writer.create(&c, input(json!({"name": "Acme"})), &Actor::user(1), &Access::everything()).await.expect_err("no credit code");
        assert_eq!(err.field_errors()[0].field, "credit_code");
        assert_eq!(err.field_errors()[0].code, "required");
        f.writer.create(&c, input(json!({"name": "Globex", "market": "foreign"})), &Actor::user(1), &Access::everything()).await.expect("foreign needs none");
        // Line errors are located inside the line; validation rules report with their message.
        let o = f.entity("order");
        let id = customer(&f, "Acme", "1").await;
        let err = f
            .writer
            .create(&o, input(json!({"customer": id, "number": "X", "note": "a", "lines": [{"qty": 0}, {"item": "big", "qty": 1, "price": "2000000"}]})), &Actor::user(1), &Access::everything())
            .await
            .expect_err("invalid lines");
        let mut found: Vec<(&str, &str)> = err.field_errors().iter().map(|e| (e.field.as_str(), e.code.as_str())).collect();
        found.sort();
        assert_eq!(found, [("lines[0].item", "required"), ("lines[0].qty", "min"), ("note", "min_length"), ("number", "read_only")]);
        let err = f.writer.create(&o, input(json!({"customer": id, "lines": [{"item": "big", "qty": 1, "price": "2000000"}]})), &Actor::user(1), &Access::everything()).await.expect_err("rule");
        assert_eq!(err.field_errors()[0].message, "An order is at most one million");
        // Money has 18 digits, two after the point: a 17-digit amount does not fit.
        let err = f.writer.create(&o, input(json!({"customer": id, "lines": [{"item": "huge", "price": "10000000000000000"}]})), &Actor::user(1), &Access::everything()).await.expect_err("too many digits");
        assert_eq!((err.field_errors()[0].field.as_str(), err.field_errors()[0].code.as_str()), ("lines[0].price", "precision"));
        assert_eq!(count(&store, "SELECT COUNT(*) FROM sales__order").await, 0);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM sales__order__lines").await, 0);
    })
    .await;
}

#[tokio::test]
async fn a_stale_version_is_a_conflict_never_a_lost_update() {
    each_backend("stale_version", async |store| {
        let f = fixture(&store).await;
        let c = f.entity("customer");
        let id = customer(&f, "Acme", "1").await;
        f.writer
            .update(
                &c,
                id,
                1,
                input(json!({"country": "CN"})),
                &Actor::user(1),
                &Access::everything(),
            )
            .await
            .expect("first writer");
        let err = f
            .writer
            .update(
                &c,
                id,
                1,
                input(json!({"country": "DE"})),
                &Actor::user(2),
                &Access::everything(),
            )
            .await
            .expect_err("second writer read version 1");
        assert!(
            matches!(
                err,
                RecordError::Conflict {
                    expected: 1,
                    found: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            texts(&store, "SELECT country FROM sales__customer").await,
            [Some("CN".to_owned())]
        );
    })
    .await;
}

#[tokio::test]
async fn unique_violations_name_the_existing_record() {
    each_backend("unique_names", async |store| {
        let f = fixture(&store).await;
        let c = f.entity("customer");
        let first = customer(&f, "Acme", "91310000A").await;
        let err = f.writer.create(&c, input(json!({"name": "Acme Two", "credit_code": "91310000A"})), &Actor::user(1), &Access::everything()).await.expect_err("duplicate");
        let e = &err.field_errors()[0];
        assert_eq!((e.field.as_str(), e.code.as_str()), ("credit_code", "unique"));
        assert_eq!(e.message, format!("A domestic customer with this credit code exists: customer Acme (#{first})"));
        // The key is conditional: a foreign customer may carry the same code.
        let gmbh = f.writer.create(&c, input(json!({"name": "Acme GmbH", "market": "foreign", "credit_code": "91310000A", "country": "DE", "email": "a@acme.de"}))
            , &Actor::user(1), &Access::everything()).await.expect("foreign").id;
        // The foreign key compares trimmed, case-insensitive text across three fields.
        let err = f.writer.create(&c, input(json!({"name": " ACME gmbh ", "market": "foreign", "country": "de", "email": "A@acme.de"})), &Actor::user(1), &Access::everything()).await.expect_err("same foreign customer");
        // It names the fields the key shows of the existing record.
        assert!(err.field_errors()[0].message.ends_with(&format!("customer Acme GmbH (#{gmbh}) (country DE, email a@acme.de)")), "{err}");
        f.writer.create(&c, input(json!({"name": "Acme GmbH", "market": "foreign", "country": "AT", "email": "a@acme.de"})), &Actor::user(1), &Access::everything()).await.expect("another country");
        // Updating a record to its own values is not a duplicate of itself.
        f.writer.update(&c, first, 1, input(json!({"name": "Acme Ltd"})), &Actor::user(1), &Access::everything()).await.expect("self");
    })
    .await;
}

#[tokio::test]
async fn a_failure_midway_through_a_bulk_write_leaves_nothing() {
    each_backend("bulk_rollback", async |store| {
        let f = fixture(&store).await;
        let c = customer(&f, "Acme", "1").await;
        let o = f.entity("order");
        let orders: Vec<_> = (0..5).map(|i| input(json!({"customer": if i == 3 { 999_999 } else { c }, "lines": [{"item": "x", "qty": 1, "price": "1"}]}))).collect();
        let err = f.writer.create_many(&o, orders, &Actor::user(1), &Access::everything()).await.expect_err("row 3 links nowhere");
        assert!(matches!(&err, RecordError::Row { row: 3, .. }), "{err}");
        assert_eq!(err.field_errors()[0].code, "link");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM sales__order").await, 0);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM sales__order__lines").await, 0);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM trellis_audit WHERE entity = 'order'").await, 0);
        let good: Vec<_> = (0..5).map(|_| input(json!({"customer": c}))).collect();
        let made = f.writer.create_many(&o, good, &Actor::user(1), &Access::everything()).await.expect("all good");
        assert_eq!(made.len(), 5);
    })
    .await;
}

#[tokio::test]
async fn deleting_respects_each_links_rule() {
    each_backend("delete_rules", async |store| {
        let f = fixture(&store).await;
        let (c, o, t, k) = (
            f.entity("customer"),
            f.entity("order"),
            f.entity("ticket"),
            f.entity("contact"),
        );
        let acme = customer(&f, "Acme", "1").await;
        f.writer
            .create(
                &o,
                input(json!({"customer": acme, "lines": [{"item": "x", "qty": 1, "price": "1"}]})),
                &Actor::user(1),
                &Access::everything(),
            )
            .await
            .expect("order");
        let ticket = f
            .writer
            .create(
                &t,
                input(json!({"customer": acme, "subject": "noise"})),
                &Actor::user(1),
                &Access::everything(),
            )
            .await
            .expect("ticket");
        let contact = f
            .writer
            .create(
                &k,
                input(json!({"customer": acme, "name": "Li"})),
                &Actor::user(1),
                &Access::everything(),
            )
            .await
            .expect("contact");
        let err = f
            .writer
            .delete(&c, acme, &Actor::user(1), &Access::everything())
            .await
            .expect_err("a contact links to it");
        assert!(
            matches!(&err, RecordError::Linked { by, count: 1, .. } if by == "contact"),
            "{err}"
        );
        f.writer
            .delete(&k, contact.id, &Actor::user(1), &Access::everything())
            .await
            .expect("contact deleted");
        f.writer
            .delete(&c, acme, &Actor::user(1), &Access::everything())
            .await
            .expect("now it goes");
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM sales__order").await,
            0,
            "orders cascade"
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM sales__order__lines").await,
            0,
            "with their lines"
        );
        assert_eq!(
            count(
                &store,
                &format!(
                    "SELECT COUNT(*) FROM sales__ticket WHERE id = {} AND customer IS NULL",
                    ticket.id
                )
            )
            .await,
            1,
            "tickets are unlinked"
        );
        let err = f
            .writer
            .delete(&c, acme, &Actor::user(1), &Access::everything())
            .await
            .expect_err("gone");
        assert!(matches!(err, RecordError::NotFound { .. }));
    })
    .await;
}

#[tokio::test]
async fn concurrent_writers_get_unique_numbers_without_gaps_where_required() {
    each_backend("numbering", async |store| {
        let f = Arc::new(fixture(&store).await);
        let c = customer(&f, "Acme", "1").await;
        let mut tasks = Vec::new();
        for i in 0..32 {
            let f = f.clone();
            tasks.push(tokio::spawn(async move {
                let order = f.entity("order");
                let ticket = f.entity("ticket");
                let o = f
                    .writer
                    .create(
                        &order,
                        input(json!({"customer": c})),
                        &Actor::user(i),
                        &Access::everything(),
                    )
                    .await
                    .expect("order");
                let t = f
                    .writer
                    .create(
                        &ticket,
                        input(json!({"subject": "s"})),
                        &Actor::user(i),
                        &Access::everything(),
                    )
                    .await
                    .expect("ticket");
                (
                    o.values["number"].as_str().map(str::to_owned),
                    t.values["code"].as_str().map(str::to_owned),
                )
            }));
        }
        let mut numbers = Vec::new();
        let mut codes = Vec::new();
        for task in tasks {
            let (n, c) = task.await.expect("task");
            numbers.push(n.expect("number"));
            codes.push(c.expect("code"));
        }
        let mut seq: Vec<i64> = numbers
            .iter()
            .map(|n| {
                n.rsplit('-')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("counter")
            })
            .collect();
        seq.sort_unstable();
        assert_eq!(
            seq,
            (1..=32).collect::<Vec<_>>(),
            "gap-free: 1 to 32, each once"
        );
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), 32, "gap-tolerant: no duplicates");
    })
    .await;
}

#[tokio::test]
async fn duplicates_inside_one_batch_are_refused_too() {
    each_backend("batch_duplicates", async |store| {
        let f = fixture(&store).await;
        let c = f.entity("customer");
        let batch = vec![
            input(json!({"name": "A", "credit_code": "X1"})),
            input(json!({"name": "B", "market": "foreign", "credit_code": "X1", "country": "DE", "email": "b@b.de"})),
            input(json!({"name": "C", "credit_code": "X1"})),
        ];
        let err = f.writer.create_many(&c, batch, &Actor::user(1), &Access::everything()).await.expect_err("row 2 repeats row 0");
        assert!(matches!(&err, RecordError::Row { row: 2, .. }), "{err}");
        assert_eq!(err.field_errors()[0].code, "unique");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM sales__customer").await, 0);
    })
    .await;
}
