//! Line columns a role may not see (`lines.cost: hidden`) or change
//! (`lines.price: read_only`), on SQLite and PostgreSQL: absent from every
//! line the role reads, refused in its writes, kept when its lines leave
//! them out, and still set by the model's own logic.

mod common;

use std::sync::Arc;

use common::{each_backend, model};
use serde_json::{Map, Value as Json, json};
use trellis_engine::model::Operation;
use trellis_runtime::catalog::EntityModel;
use trellis_runtime::permission::{Permissions, User};
use trellis_runtime::services::Services;
use trellis_runtime::workflow::Decision;
use trellis_runtime::{
    Access, Actor, Catalog, ListQuery, RecordError, RecordReader, RecordWriter, Store, deploy_model,
};

const APP: &str = "name: shop\nlabel: Shop\n";

const ORDER: &str = r#"
label: Order
title: number
fields:
  number: {type: text}
  lines:
    type: table
    fields:
      product: {type: text, required: true}
      qty: {type: decimal, scale: 2}
      price: {type: money}
      cost: {type: money}
      amount: {type: money, computed: "if qty == () || price == () { 0.0 } else { qty * price }"}
      margin: {type: money, computed: "if qty == () || price == () || cost == () { 0.0 } else { (price - cost) * qty }"}
  total:
    type: money
    computed: "lines.reduce(|s, l| s + (if l.amount == () { 0.0 } else { l.amount }), 0.0)"
actions:
  - action: adjust
    label: Adjust quantities
    roles: [clerk]
    input: [lines]
"#;

/// `portal` reads without the company's cost; `clerk` edits lines without
/// seeing their cost; `pricer` may not change prices or amounts; `staff` sees everything.
const ROLES: &str = r#"
roles:
  portal:
    label: Portal
    external: true
    permissions:
      order:
        allow: [read, export]
        fields: {lines.cost: hidden, lines.margin: hidden}
  clerk:
    label: Clerk
    permissions:
      order:
        allow: [create, read, update]
        fields: {lines.cost: hidden, lines.margin: hidden}
  pricer:
    label: Pricer
    permissions:
      order:
        allow: [create, read, update]
        fields: {lines.price: read_only, lines.amount: read_only}
  staff:
    label: Staff
    permissions:
      order: {allow: [create, read, update, export]}
"#;

struct Fixture {
    services: Services,
    writer: RecordWriter,
    reader: RecordReader,
    permissions: Permissions,
    order: Arc<EntityModel>,
}

async fn fixture(store: &Store) -> Fixture {
    let m = model(&[
        ("app.yaml", APP),
        ("entities/order.yaml", ORDER),
        ("roles.yaml", ROLES),
    ]);
    deploy_model(store, &m, false).await.expect("deploys");
    let catalog = Arc::new(Catalog::new(&m));
    Fixture {
        services: Services::new(store.clone(), &m),
        writer: RecordWriter::new(store.clone(), catalog.clone()),
        reader: RecordReader::new(store.clone(), catalog.clone()),
        permissions: Permissions::new(&m),
        order: catalog.entity("shop", "order").expect("order"),
    }
}

fn user(id: i64, roles: &[&str]) -> User {
    User {
        id,
        username: format!("user{id}"),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        actor: Actor::user(id),
    }
}

fn map(v: Json) -> Map<String, Json> {
    v.as_object().cloned().expect("an object")
}

fn num(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.parse().ok(),
        _ => None,
    }
}

impl Fixture {
    fn access(&self, user: &User, op: Operation) -> Access {
        self.permissions
            .access(user, &self.order, op)
            .expect("allowed")
    }

    /// An order with two lines, written by the platform.
    async fn seed(&self) -> i64 {
        let input = json!({
            "number": "SO-1",
            "lines": [
                {"product": "meter", "qty": 2, "price": 10, "cost": 6},
                {"product": "relay", "qty": 1, "price": 5, "cost": 4},
            ],
        });
        self.writer
            .create(
                &self.order,
                map(input),
                &Actor::user(1),
                &Access::everything(),
            )
            .await
            .expect("seeded")
            .id
    }

    /// The lines of order `id` as the platform sees them.
    async fn lines(&self, id: i64) -> Vec<Map<String, Json>> {
        let record = self
            .reader
            .get(&self.order, id, &Access::everything())
            .await
            .expect("reads");
        lines_of(&record.values)
    }

    async fn version(&self, id: i64) -> i64 {
        self.reader
            .get(&self.order, id, &Access::everything())
            .await
            .expect("reads")
            .version
    }

    async fn update_as(&self, user: &User, id: i64, patch: Json) -> Result<(), RecordError> {
        let access = self.access(user, Operation::Update);
        let version = self.version(id).await;
        self.writer
            .update(&self.order, id, version, map(patch), &user.actor, &access)
            .await
            .map(|_| ())
    }
}

fn lines_of(values: &Map<String, Json>) -> Vec<Map<String, Json>> {
    values["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| l.as_object().cloned().expect("a line"))
        .collect()
}

/// Lines to send back: without their computed columns, which no one writes.
fn editable(mut lines: Vec<Map<String, Json>>) -> Vec<Map<String, Json>> {
    for line in &mut lines {
        line.remove("amount");
        line.remove("margin");
    }
    lines
}

fn codes(err: &RecordError) -> Vec<(String, String)> {
    err.field_errors()
        .iter()
        .map(|e| (e.field.clone(), e.code.clone()))
        .collect()
}

#[tokio::test]
async fn hidden_line_columns_are_absent_from_every_read_of_the_role() {
    each_backend("hidden_line_columns", async |store| {
        let f = fixture(&store).await;
        let id = f.seed().await;
        let portal = user(10, &["portal"]);
        let staff = user(11, &["staff"]);

        let read = f.access(&portal, Operation::Read);
        let seen = f.reader.get(&f.order, id, &read).await.expect("gets");
        for line in lines_of(&seen.values) {
            assert!(!line.contains_key("cost"), "{line:?}");
            assert!(!line.contains_key("margin"), "{line:?}");
            assert!(line.contains_key("price") && line.contains_key("amount"));
            assert!(line.contains_key("id"));
        }
        assert_eq!(num(&seen.values["total"]), Some(25.0));
        let staff_read = f.access(&staff, Operation::Read);
        let full = f.reader.get(&f.order, id, &staff_read).await.expect("gets");
        let full_lines = lines_of(&full.values);
        assert_eq!(num(&full_lines[0]["cost"]), Some(6.0));
        assert_eq!(num(&full_lines[0]["margin"]), Some(8.0));

        // A list (and so an export, which pages through it) holds no line column.
        for op in [Operation::Read, Operation::Export] {
            let page = f
                .reader
                .list(&f.order, &ListQuery::default(), &f.access(&portal, op))
                .await
                .expect("lists");
            let text = serde_json::to_string(&page.records).expect("serialises");
            assert!(!text.contains("cost") && !text.contains("margin"), "{text}");
        }

        // A role that hides nothing gives the columns back to a user holding both.
        let both = user(12, &["portal", "staff"]);
        let shown = f
            .reader
            .get(&f.order, id, &f.access(&both, Operation::Read))
            .await
            .expect("gets");
        assert!(lines_of(&shown.values)[0].contains_key("cost"));

        // The history: a change of hidden columns only is not shown at all,
        // and a change of lines shows them without their hidden columns.
        let mut lines = editable(f.lines(id).await);
        lines[0].insert("cost".into(), json!(7));
        let version = f.version(id).await;
        f.writer
            .update(
                &f.order,
                id,
                version,
                map(json!({"lines": lines})),
                &Actor::user(1),
                &Access::everything(),
            )
            .await
            .expect("cost changed");
        let portal_history = f
            .reader
            .history(&f.order, id, &read)
            .await
            .expect("history");
        assert_eq!(portal_history.len(), 1, "{portal_history:?}");
        let staff_history = f
            .reader
            .history(&f.order, id, &staff_read)
            .await
            .expect("history");
        assert_eq!(staff_history.len(), 2);
        assert!(staff_history[1].changes.contains_key("lines"));
        lines[0].insert("qty".into(), json!(3));
        f.writer
            .update(
                &f.order,
                id,
                version + 1,
                map(json!({"lines": lines})),
                &Actor::user(1),
                &Access::everything(),
            )
            .await
            .expect("qty changed");
        let portal_history = f
            .reader
            .history(&f.order, id, &read)
            .await
            .expect("history");
        assert_eq!(portal_history.len(), 2);
        let text = serde_json::to_string(&portal_history[1].changes).expect("serialises");
        assert!(text.contains("qty") && !text.contains("cost"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn hidden_line_columns_are_refused_in_writes_and_kept_when_left_out() {
    each_backend("hidden_line_writes", async |store| {
        let f = fixture(&store).await;
        let id = f.seed().await;
        let clerk = user(20, &["clerk"]);

        // Naming a hidden column, on a kept line or a new one, is refused as unknown.
        let mut lines = editable(f.lines(id).await);
        lines[0].insert("cost".into(), json!(1));
        lines[1].remove("cost");
        let err = f
            .update_as(&clerk, id, json!({"lines": lines}))
            .await
            .expect_err("refused");
        assert_eq!(
            codes(&err),
            [("lines[0].cost".to_owned(), "unknown_field".to_owned())]
        );
        let create = f.access(&clerk, Operation::Create);
        let input = json!({"number": "SO-2", "lines": [{"product": "meter", "qty": 1, "price": 9, "cost": 1}]});
        let err = f
            .writer
            .create(&f.order, map(input), &clerk.actor, &create)
            .await
            .expect_err("refused");
        assert_eq!(
            codes(&err),
            [("lines[0].cost".to_owned(), "unknown_field".to_owned())]
        );

        // The lines as the clerk reads them, changed and sent back: the
        // stored cost stays, and the computed margin is computed from it.
        let read = f.access(&clerk, Operation::Read);
        let seen = f.reader.get(&f.order, id, &read).await.expect("gets");
        let mut lines = editable(lines_of(&seen.values));
        lines[0].insert("qty".into(), json!(3));
        lines.push(map(json!({"product": "fuse", "qty": 1, "price": 2})));
        f.update_as(&clerk, id, json!({"lines": lines}))
            .await
            .expect("updated");
        let stored = f.lines(id).await;
        assert_eq!(stored.len(), 3);
        assert_eq!(num(&stored[0]["cost"]), Some(6.0));
        assert_eq!(num(&stored[0]["margin"]), Some(12.0));
        assert_eq!(num(&stored[1]["cost"]), Some(4.0));
        assert_eq!(stored[2]["cost"], Json::Null);
    })
    .await;
}

#[tokio::test]
async fn read_only_line_columns_keep_their_values_and_the_model_still_sets_them() {
    each_backend("read_only_line_columns", async |store| {
        let f = fixture(&store).await;
        let id = f.seed().await;
        let pricer = user(30, &["pricer"]);

        // Sent back unchanged (even as text), the read-only columns are accepted.
        let mut lines = editable(f.lines(id).await);
        lines[0].insert("price".into(), json!("10.00"));
        lines[0].insert("qty".into(), json!(4));
        f.update_as(&pricer, id, json!({"lines": lines}))
            .await
            .expect("unchanged prices pass");
        let stored = f.lines(id).await;
        assert_eq!(num(&stored[0]["price"]), Some(10.0));
        // The computed read-only column is still computed.
        assert_eq!(num(&stored[0]["amount"]), Some(40.0));

        // A changed price, or a price on a new line, is refused.
        let mut changed = lines.clone();
        changed[1].insert("price".into(), json!(6));
        changed.push(map(json!({"product": "fuse", "qty": 1, "price": 2})));
        let err = f
            .update_as(&pricer, id, json!({"lines": changed}))
            .await
            .expect_err("refused");
        assert_eq!(
            codes(&err),
            [
                ("lines[1].price".to_owned(), "read_only".to_owned()),
                ("lines[2].price".to_owned(), "read_only".to_owned()),
            ]
        );
        let create = f.access(&pricer, Operation::Create);
        let input =
            json!({"number": "SO-3", "lines": [{"product": "meter", "qty": 1, "price": 9}]});
        let err = f
            .writer
            .create(&f.order, map(input), &pricer.actor, &create)
            .await
            .expect_err("refused");
        assert_eq!(
            codes(&err),
            [("lines[0].price".to_owned(), "read_only".to_owned())]
        );

        // Left out, a read-only column keeps its stored value.
        let mut left_out = lines.clone();
        for line in &mut left_out {
            line.remove("price");
        }
        left_out[1].insert("qty".into(), json!(2));
        f.update_as(&pricer, id, json!({"lines": left_out}))
            .await
            .expect("prices kept");
        let stored = f.lines(id).await;
        assert_eq!(num(&stored[1]["price"]), Some(5.0));
        assert_eq!(num(&stored[1]["amount"]), Some(10.0));

        // The platform (model logic) still changes it.
        let mut lines = editable(f.lines(id).await);
        lines[1].insert("price".into(), json!(6));
        let version = f.version(id).await;
        f.writer
            .update(
                &f.order,
                id,
                version,
                map(json!({"lines": lines})),
                &Actor::user(1),
                &Access::everything(),
            )
            .await
            .expect("the platform sets prices");
        assert_eq!(num(&f.lines(id).await[1]["price"]), Some(6.0));
    })
    .await;
}

#[tokio::test]
async fn action_inputs_follow_the_same_line_column_rules() {
    each_backend("line_column_actions", async |store| {
        let f = fixture(&store).await;
        let id = f.seed().await;
        let clerk = user(20, &["clerk"]);
        let read = f.access(&clerk, Operation::Read);
        let seen = f.reader.get(&f.order, id, &read).await.expect("gets");
        let decision = |lines: &[Map<String, Json>]| Decision {
            comment: None,
            values: map(json!({"lines": lines})),
            version: None,
        };

        let mut lines = editable(lines_of(&seen.values));
        lines[0].insert("cost".into(), json!(1));
        let err = f
            .services
            .act(&clerk, &f.order, id, "adjust", decision(&lines))
            .await
            .expect_err("refused");
        assert_eq!(
            codes(&err),
            [("lines[0].cost".to_owned(), "unknown_field".to_owned())]
        );

        lines[0].remove("cost");
        lines[0].insert("qty".into(), json!(5));
        let done = f
            .services
            .act(&clerk, &f.order, id, "adjust", decision(&lines))
            .await
            .expect("adjusted");
        // The record the action answers with is the clerk's view of it.
        assert!(
            lines_of(&done.record.values)
                .iter()
                .all(|l| !l.contains_key("cost") && l.contains_key("qty"))
        );
        let stored = f.lines(id).await;
        assert_eq!(num(&stored[0]["qty"]), Some(5.0));
        assert_eq!(num(&stored[0]["cost"]), Some(6.0));
        assert_eq!(num(&stored[0]["margin"]), Some(20.0));
    })
    .await;
}

/// The bundled order app keeps the company's cost off the lines of the sales
/// orders that customer and dealer portal accounts read.
#[test]
fn portal_accounts_of_the_order_app_do_not_see_line_cost_or_margin() {
    let apps = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runtime/ has a parent")
        .join("apps");
    let report = trellis_engine::check(&[apps.join("crm"), apps.join("order")]);
    let m = report.model.expect("the bundled apps check");
    let catalog = Catalog::new(&m);
    let permissions = Permissions::new(&m);
    let order = catalog.entity("order", "sales_order").expect("sales_order");
    for role in ["customer", "dealer"] {
        let access = permissions
            .access(&user(40, &[role]), &order, Operation::Read)
            .expect("portal accounts read their orders");
        for column in ["cost", "margin"] {
            assert!(access.hides_column("lines", column), "{role}: {column}");
        }
        assert!(!access.hides_column("lines", "price"), "{role}");
    }
    let sales = permissions
        .access(&user(41, &["sales"]), &order, Operation::Read)
        .expect("sales read orders");
    assert!(!sales.hides_column("lines", "cost"));
}
