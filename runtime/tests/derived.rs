//! Values the model derives, on SQLite and PostgreSQL: hooks that read and
//! write a record's lines (and records found through the record API with
//! theirs), exact numbers inside JSON values, computed and `=expression`
//! values rounded to their field's scale, `$today+7d` in effect values and
//! defaults, line mappings filtered on numeric columns, and tree `inherit`.

mod common;

use std::sync::Arc;

use common::{each_backend, model};
use serde_json::{Map, Value as Json, json};
use trellis_engine::model::Operation;
use trellis_runtime::account::{AccountChange, create_user};
use trellis_runtime::permission::{Permissions, User};
use trellis_runtime::workflow::{Decision, Workflows};
use trellis_runtime::{Access, Actor, Catalog, RecordError, RecordReader, RecordWriter, Store};

const ORDER: &str = r##"
label: Order
title: number
fields:
  number: {type: text, required: true}
  total: {type: money}
  share: {type: money, computed: "if total == () { () } else { total / 3 }"}
  summary: {type: json, computed: "#{ total: total, lines: lines.map(|l| #{ qty: l.qty }) }"}
  discount: {type: money}
  due: {type: date}
  follow_up: {type: date, default: $today+7d}
  line_count: {type: integer}
  found_lines: {type: integer}
  shipment: {type: link, target: shipment}
  lines:
    type: table
    fields:
      product: {type: text, required: true}
      qty: {type: decimal, scale: 2}
      price: {type: money}
      amount: {type: money, computed: "if qty == () || price == () { () } else { qty * price }"}
rules:
  - name: add_fee
    on: create
    when: {number: {starts_with: "H"}}
    script: |
      let n = 0;
      for line in record.lines { if line.qty > 0 { n += 1; } }
      record.line_count = n;
      let found = find("order", #{ number: record.number });
      record.found_lines = found[0].lines.len();
      record.lines = record.lines + [#{ product: "fee", qty: 1, price: 2.5 }];
"##;
const SHIPMENT: &str = r#"
label: Shipment
fields:
  note: {type: text}
  items:
    type: table
    fields:
      product: {type: text}
      qty: {type: decimal, scale: 2}
"#;
const LOG: &str = "
label: Log
fields:
  data: {type: json}
";
const CATEGORY: &str = "
label: Category
title: name
fields:
  name: {type: text, required: true}
  parent: {type: link, target: category}
  paid: {type: boolean}
  code: {type: text, required: true}
tree: {parent: parent, inherit: [paid, code]}
";
const WORKFLOW: &str = r##"
entity: order
field: status
states:
  draft: {initial: true}
  placed: {final: true}
transitions:
  - action: place
    from: draft
    to: placed
    roles: [clerk]
    effects:
      - set: {due: $today+7d, discount: =total / 7}
      - create:
          entity: shipment
          fields: {note: =number}
          lines:
            items:
              from: lines
              fields: {product: =product, qty: =qty}
              when: {qty: {gt: 0}}
          link_back: shipment
      - run: |
          create("log", #{ data: [#{ total: record.total, rate: 0.5 }] });
  - action: count
    from: draft
    to: placed
    roles: [clerk]
    effects:
      - run: |
          let n = 0;
          for line in record.lines { n += line.qty; }
          record.line_count = n.to_int();
          record.lines = record.lines.filter(|l| l.qty > 0);
"##;
const ROLES: &str = "
roles:
  clerk:
    label: Clerk
    permissions:
      order: {allow: [create, read, update]}
      shipment: {allow: [create, read]}
      log: {allow: [create, read]}
      category: {allow: [create, read, update]}
";

struct World {
    catalog: Arc<Catalog>,
    writer: RecordWriter,
    reader: RecordReader,
    workflows: Workflows,
    permissions: Arc<Permissions>,
    clerk: User,
}

impl World {
    async fn new(store: Store) -> World {
        let m = model(&[
            ("app.yaml", "name: shop\nlabel: Shop\n"),
            ("entities/order.yaml", ORDER),
            ("entities/shipment.yaml", SHIPMENT),
            ("entities/log.yaml", LOG),
            ("entities/category.yaml", CATEGORY),
            ("workflows/order.yaml", WORKFLOW),
            ("roles.yaml", ROLES),
        ]);
        trellis_runtime::serve::prepare(&store, &m, Some("admin-password"))
            .await
            .expect("deploys");
        let catalog = Arc::new(Catalog::new(&m));
        let permissions = Arc::new(Permissions::new(&m));
        let writer =
            RecordWriter::new(store.clone(), catalog.clone()).with_permissions(permissions.clone());
        let workflows = Workflows::new(&m, catalog.clone(), writer.clone(), permissions.clone());
        let id = create_user(
            &store,
            AccountChange {
                username: Some("cleo".into()),
                password: Some("password-1".into()),
                roles: Some(vec!["clerk".into()]),
                ..Default::default()
            },
        )
        .await
        .expect("creates the user");
        let clerk = User {
            id,
            username: "cleo".into(),
            roles: vec!["clerk".into()],
            actor: Actor {
                roles: vec!["clerk".into()],
                ..Actor::user(id)
            },
        };
        World {
            reader: RecordReader::new(store.clone(), catalog.clone()),
            catalog,
            writer,
            workflows,
            permissions,
            clerk,
        }
    }

    fn access(&self, entity: &str, op: Operation) -> Access {
        let entity = self.catalog.entity("shop", entity).expect("entity");
        self.permissions
            .access(&self.clerk, &entity, op)
            .expect("allowed")
    }

    async fn create(&self, entity: &str, values: Json) -> Result<i64, RecordError> {
        let access = self.access(entity, Operation::Create);
        let entity = self.catalog.entity("shop", entity).expect("entity");
        let Json::Object(values) = values else {
            unreachable!()
        };
        self.writer
            .create(&entity, values, &self.clerk.actor, &access)
            .await
            .map(|r| r.id)
    }

    async fn get(&self, entity: &str, id: i64) -> Map<String, Json> {
        let entity = self.catalog.entity("shop", entity).expect("entity");
        self.reader
            .get(&entity, id, &Access::everything())
            .await
            .expect("reads")
            .values
    }

    async fn ids(&self, entity: &str) -> Vec<i64> {
        let entity = self.catalog.entity("shop", entity).expect("entity");
        let page = self
            .reader
            .list(&entity, &Default::default(), &Access::everything())
            .await
            .expect("lists");
        page.records.iter().map(|r| r.id).collect()
    }

    async fn act(&self, id: i64, action: &str) -> Result<(), RecordError> {
        let entity = self.catalog.entity("shop", "order").expect("entity");
        let me = self
            .workflows
            .me(self.clerk.clone(), true)
            .await
            .expect("me");
        let access = self.access("order", Operation::Read);
        let decision = Decision {
            comment: None,
            values: Map::new(),
            version: None,
        };
        self.workflows
            .act(&entity, id, action, decision, &me, &access)
            .await
            .map(|_| ())
    }
}

fn today_plus(days: i64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(days)).to_string()
}

/// An order of two lines, one of them for nothing; `H` numbers run the
/// `add_fee` hook.
async fn an_order(world: &World, number: &str) -> i64 {
    world
        .create(
            "order",
            json!({
                "number": number, "total": "100.00",
                "lines": [
                    {"product": "desk", "qty": "2", "price": "10.25"},
                    {"product": "gift", "qty": "0", "price": "1"},
                ],
            }),
        )
        .await
        .expect("creates the order")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_read_and_write_lines() {
    each_backend("hooks_lines", async |store| {
        let world = World::new(store).await;
        let id = an_order(&world, "H-1").await;
        let order = world.get("order", id).await;
        // The hook iterated the lines, saw them through `find` and added one.
        assert_eq!(order["line_count"], json!(1));
        assert_eq!(order["found_lines"], json!(2));
        let lines = order["lines"].as_array().expect("lines");
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0]["amount"], json!("20.50"));
        assert_eq!(lines[2]["product"], json!("fee"));
        assert_eq!(lines[2]["amount"], json!("2.50"));
        // A `run` effect reads the lines and writes them back, ids kept.
        let kept = lines[0]["id"].clone();
        world.act(id, "count").await.expect("counts");
        let order = world.get("order", id).await;
        assert_eq!(order["line_count"], json!(3));
        let lines = order["lines"].as_array().expect("lines");
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["id"], kept);
        assert_eq!(lines[1]["product"], json!("fee"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn computed_values_are_rounded_and_keep_nested_decimals() {
    each_backend("derived_values", async |store| {
        let world = World::new(store).await;
        let id = an_order(&world, "SO-1").await;
        let order = world.get("order", id).await;
        // 100 / 3, rounded to the field's scale instead of refused.
        assert_eq!(order["share"], json!("33.33"));
        assert_eq!(
            order["summary"],
            json!({"total": "100", "lines": [{"qty": "2"}, {"qty": "0"}]})
        );
        assert_eq!(order["follow_up"], json!(today_plus(7)));
        // What a person types still has to fit the scale.
        let typed = world
            .create("order", json!({"number": "SO-2", "total": "1.234"}))
            .await;
        let Err(RecordError::Invalid(errors)) = typed else {
            panic!("accepted {typed:?}")
        };
        assert_eq!(errors[0].code, "scale");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effects_use_offsets_round_and_filter_lines() {
    each_backend("effects_derived", async |store| {
        let world = World::new(store).await;
        let id = an_order(&world, "SO-1").await;
        world.act(id, "place").await.expect("places the order");
        let order = world.get("order", id).await;
        assert_eq!(order["due"], json!(today_plus(7)));
        // 100 / 7 = 14.2857…
        assert_eq!(order["discount"], json!("14.29"));
        let shipment = order["shipment"].as_i64().expect("linked back");
        let items = world.get("shipment", shipment).await["items"].clone();
        let products: Vec<&str> = items
            .as_array()
            .expect("items")
            .iter()
            .map(|l| l["product"].as_str().expect("product"))
            .collect();
        assert_eq!(products, ["desk"], "the line with qty 0 stays out");
        let logs = world.ids("log").await;
        let log = world.get("log", logs[0]).await;
        assert_eq!(log["data"], json!([{"total": "100", "rate": 0.5}]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_children_inherit_empty_fields() {
    each_backend("tree_inherit", async |store| {
        let world = World::new(store).await;
        let root = world
            .create(
                "category",
                json!({"name": "Travel", "paid": true, "code": "TR"}),
            )
            .await
            .expect("creates the root");
        let child = world
            .create("category", json!({"name": "Flights", "parent": root}))
            .await
            .expect("the child takes the required code from its parent");
        let values = world.get("category", child).await;
        assert_eq!(values["paid"], json!(true));
        assert_eq!(values["code"], json!("TR"));
        let own = world
            .create(
                "category",
                json!({"name": "Hotels", "parent": root, "paid": false, "code": "HO"}),
            )
            .await
            .expect("creates");
        let values = world.get("category", own).await;
        assert_eq!(values["paid"], json!(false));
        assert_eq!(values["code"], json!("HO"));
    })
    .await;
}
