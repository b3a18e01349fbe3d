//! Entity hooks on SQLite and PostgreSQL: `create` and `update` rules run
//! after the write with the record API, in its transaction and under the
//! writer's roles; what they assign to `record` is written back; `delete`
//! rules may refuse (`refuse`, a `guard` error in the model's words); a failing hook leaves nothing behind; hooks that set each
//! other off stop at a depth.

mod common;

use std::sync::Arc;

use common::{count, each_backend, model};
use serde_json::{Map, Value as Json, json};
use trellis_runtime::permission::Permissions;
use trellis_runtime::read::{Access, RecordReader};
use trellis_runtime::record::{Actor, RecordError};
use trellis_runtime::write::RecordWriter;
use trellis_runtime::{Catalog, Store};

const CUSTOMER: &str = "
label: Customer
title: name
fields:
  name: {type: text, required: true}
  last_contact: {type: date}
  pinned: {type: boolean}
  code: {type: text}
rules:
  - name: code_from_name
    on: compute
    script: |
      record.code = record.name.to_upper();
  - name: pinned_stay
    on: delete
    script: |
      if record.pinned == true { refuse(\"Pinned customers stay\"); }
";
const FOLLOW_UP: &str = "
label: Follow-up
fields:
  customer: {type: link, target: customer, required: true}
  contacted_on: {type: date, required: true}
  summary: {type: text}
rules:
  - name: keep_last_contact
    on: create
    script: |
      let customer = get(\"customer\", record.customer);
      if record.contacted_on > today { throw \"a follow-up cannot be in the future\"; }
      update(\"customer\", customer.id, #{ last_contact: record.contacted_on });
      record.summary = \"contact with \" + customer.name;
  - name: moved
    on: update
    when: {contacted_on: {ne: null}}
    script: |
      if old.contacted_on != record.contacted_on {
        update(\"customer\", record.customer, #{ last_contact: record.contacted_on });
      }
";
const ECHO: &str = "
label: Echo
fields:
  n: {type: integer, default: 0}
rules:
  - name: again
    on: update
    script: |
      update(\"echo\", record.id, #{ n: record.n + 1 });
";
const ROLES: &str = "
roles:
  sales:
    label: Sales
    permissions:
      follow_up: {allow: [create, read, update]}
      customer: {allow: [read]}
  manager:
    label: Manager
    permissions:
      follow_up: {allow: [create, read, update]}
      customer: {allow: [read, update]}
";

struct World {
    store: Store,
    catalog: Arc<Catalog>,
    writer: RecordWriter,
    reader: RecordReader,
}

impl World {
    async fn new(store: Store) -> World {
        let m = model(&[
            ("app.yaml", "name: crm\nlabel: CRM\n"),
            ("entities/customer.yaml", CUSTOMER),
            ("entities/follow_up.yaml", FOLLOW_UP),
            ("entities/echo.yaml", ECHO),
            ("roles.yaml", ROLES),
        ]);
        trellis_runtime::serve::prepare(&store, &m, Some("admin-password"))
            .await
            .expect("deploys");
        let catalog = Arc::new(Catalog::new(&m));
        World {
            writer: RecordWriter::new(store.clone(), catalog.clone())
                .with_permissions(Arc::new(Permissions::new(&m))),
            reader: RecordReader::new(store.clone(), catalog.clone()),
            catalog,
            store,
        }
    }

    async fn create(&self, entity: &str, values: Json, actor: &Actor) -> Result<i64, RecordError> {
        let entity = self.catalog.entity("crm", entity).expect("entity");
        let Json::Object(values) = values else {
            unreachable!()
        };
        self.writer
            .create(&entity, values, actor, &Access::everything())
            .await
            .map(|r| r.id)
    }

    async fn get(&self, entity: &str, id: i64) -> Map<String, Json> {
        let entity = self.catalog.entity("crm", entity).expect("entity");
        self.reader
            .get(&entity, id, &Access::everything())
            .await
            .expect("reads")
            .values
    }
}

fn person(id: i64, role: &str) -> Actor {
    Actor {
        roles: vec![role.to_owned()],
        ..Actor::user(id)
    }
}

fn message(error: RecordError) -> (String, String) {
    match error {
        RecordError::Invalid(errors) => (errors[0].code.clone(), errors[0].message.clone()),
        other => panic!("not a field error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_update_hooks_write_other_records_and_their_own() {
    each_backend("hooks_write", async |store: Store| {
        let w = World::new(store).await;
        let acme = w
            .create("customer", json!({"name": "Acme"}), &Actor::system())
            .await
            .expect("a customer");
        let manager = person(7, "manager");
        let follow_up = w
            .create(
                "follow_up",
                json!({"customer": acme, "contacted_on": "2026-12-01"}),
                &manager,
            )
            .await
            .expect("a follow-up");
        assert_eq!(w.get("customer", acme).await["last_contact"], "2026-12-01");
        assert_eq!(
            w.get("customer", acme).await["code"],
            "ACME",
            "a compute rule"
        );
        let written = w.get("follow_up", follow_up).await;
        assert_eq!(
            written["summary"], "contact with Acme",
            "the hook's own change is kept"
        );

        // The update hook sees the old record beside the new one.
        let entity = w.catalog.entity("crm", "follow_up").expect("entity");
        let version = written["version"].as_i64().expect("a version");
        let patch = json!({"contacted_on": "2026-12-03"});
        w.writer
            .update(
                &entity,
                follow_up,
                version,
                patch.as_object().cloned().expect("map"),
                &manager,
                &Access::everything(),
            )
            .await
            .expect("moves the follow-up");
        assert_eq!(w.get("customer", acme).await["last_contact"], "2026-12-03");
        // Compute rules run on every save, with `find` and friends out of reach.
        let customers = w.catalog.entity("crm", "customer").expect("entity");
        let current = w.get("customer", acme).await["version"]
            .as_i64()
            .expect("version");
        let renamed = w
            .writer
            .update(
                &customers,
                acme,
                current,
                json!({"name": "Acme Pumps"})
                    .as_object()
                    .cloned()
                    .expect("map"),
                &Actor::system(),
                &Access::everything(),
            )
            .await
            .expect("renames");
        assert_eq!(renamed.values["code"], "ACME PUMPS");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_hook_leaves_nothing_behind() {
    each_backend("hooks_refuse", async |store: Store| {
        let w = World::new(store).await;
        let acme = w
            .create(
                "customer",
                json!({"name": "Acme", "pinned": true}),
                &Actor::system(),
            )
            .await
            .expect("a customer");
        // Sales may read customers but not update them: the hook's update is
        // theirs, so the whole create is refused.
        let (_, refused) = message(
            w.create(
                "follow_up",
                json!({"customer": acme, "contacted_on": "2026-12-01"}),
                &person(8, "sales"),
            )
            .await
            .expect_err("no update permission"),
        );
        assert!(
            refused.contains("rule `keep_last_contact`")
                && refused.contains("may not update `customer`"),
            "{refused}"
        );
        // A hook that throws.
        let (code, thrown) = message(
            w.create(
                "follow_up",
                json!({"customer": acme, "contacted_on": "2999-01-01"}),
                &person(7, "manager"),
            )
            .await
            .expect_err("in the future"),
        );
        assert_eq!(code, "hook");
        assert!(
            thrown.contains("(entities/follow_up.yaml:12)")
                && thrown.contains("cannot be in the future"),
            "{thrown}"
        );
        assert_eq!(
            count(&w.store, "SELECT COUNT(*) FROM crm__follow_up").await,
            0
        );
        assert!(w.get("customer", acme).await["last_contact"].is_null());

        // A delete hook refuses a pinned customer in the model's own words.
        let customers = w.catalog.entity("crm", "customer").expect("entity");
        let (code, kept) = message(
            w.writer
                .delete(&customers, acme, &Actor::system(), &Access::everything())
                .await
                .expect_err("pinned"),
        );
        assert_eq!(
            (code.as_str(), kept.as_str()),
            ("guard", "Pinned customers stay")
        );
        assert_eq!(
            count(&w.store, "SELECT COUNT(*) FROM crm__customer").await,
            1
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_that_set_each_other_off_stop_at_a_depth() {
    each_backend("hooks_depth", async |store: Store| {
        let w = World::new(store).await;
        let echo = w
            .create("echo", json!({}), &Actor::system())
            .await
            .expect("an echo");
        let entity = w.catalog.entity("crm", "echo").expect("entity");
        let (_, deep) = message(
            w.writer
                .update(
                    &entity,
                    echo,
                    1,
                    json!({"n": 1}).as_object().cloned().expect("map"),
                    &Actor::system(),
                    &Access::everything(),
                )
                .await
                .expect_err("a loop"),
        );
        assert!(deep.contains("more than 4 levels deep"), "{deep}");
        assert_eq!(
            w.get("echo", echo).await["n"],
            0,
            "nothing of the loop is kept"
        );
    })
    .await;
}
