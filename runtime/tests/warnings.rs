//! Warnings on SQLite and PostgreSQL: a save tells what validation rules of
//! level `warning` and `warn(message)` in hooks say, and is saved all the
//! same. A hook that changes its record has the rules judge the record as
//! changed; the warnings of records a hook writes are not the change's; an
//! action gives the warnings of its effects, rules and the record's save.

mod common;

use common::{each_backend, model};
use serde_json::{Map, Value as Json, json};
use trellis_runtime::account::{AccountChange, create_user};
use trellis_runtime::permission::User;
use trellis_runtime::record::FieldError;
use trellis_runtime::services::Services;
use trellis_runtime::workflow::Decision;
use trellis_runtime::{Access, Actor, Store};

const CUSTOMER: &str = r#"
label: Customer
title: name
fields:
  name: {type: text, required: true}
  credit: {type: integer}
  note: {type: text}
  checked: {type: boolean}
rules:
  - name: credit_limit
    on: validate
    level: warning
    script: credit == () || credit <= 100
    field: credit
    message: {en: Credit above 100, zh: 信用额度超过100}
  - name: no_refusal
    on: validate
    script: name != "Refused"
    field: name
    message: {en: This name is refused}
  - name: broken_warning
    on: validate
    level: warning
    script: if name == "Broken" { note.len() > 0 } else { true }
    message: {en: Never shown}
  - name: similar
    on: create
    script: |
      let key = record.name.sub_string(0, 4);
      let others = "";
      for other in find("customer", #{ name: #{ contains: key } }) {
        if other.id != record.id {
          if others != "" { others += ", "; }
          others += other.name;
        }
      }
      if others != "" { warn("Similar customers 相似客户: " + others); }
  - name: capped
    on: create
    script: |
      if record.name.starts_with("Capped") && record.credit > 100 {
        record.credit = 100;
        warn("Credit capped at 100");
      }
  - name: with_task
    on: create
    script: |
      if record.name == "With task" { create("task", #{ title: "warn me" }); }
  - name: credit_moved
    on: update
    script: |
      if old.credit != record.credit { warn(`Credit moved from ${old.credit} to ${record.credit}`); }
  - name: checking
    on: transition
    actions: [check]
    script: |
      warn("Checked by a rule");
actions:
  - action: check
    roles: [sales]
    effects:
      - run: |
          warn("Checked by an effect");
          record.checked = true;
"#;
const TASK: &str = r#"
label: Task
fields:
  title: {type: text, required: true}
rules:
  - name: always
    on: validate
    level: warning
    script: title != "warn me"
    message: {en: A task's own warning}
  - name: told
    on: create
    script: |
      warn("A task's hook");
"#;
const ROLES: &str = "
roles:
  sales:
    label: Sales
    permissions:
      customer: {allow: [create, read, update]}
      task: {allow: [create, read]}
";

struct World {
    services: Services,
    amy: User,
}

impl World {
    async fn new(store: Store) -> World {
        let m = model(&[
            ("app.yaml", "name: crm\nlabel: CRM\n"),
            ("entities/customer.yaml", CUSTOMER),
            ("entities/task.yaml", TASK),
            ("roles.yaml", ROLES),
        ]);
        trellis_runtime::serve::prepare(&store, &m, Some("admin-password"))
            .await
            .expect("deploys");
        let id = create_user(
            &store,
            AccountChange {
                username: Some("amy".into()),
                password: Some("password-1".into()),
                roles: Some(vec!["sales".into()]),
                ..Default::default()
            },
        )
        .await
        .expect("creates the user");
        let amy = User {
            id,
            username: "amy".into(),
            roles: vec!["sales".into()],
            actor: Actor {
                roles: vec!["sales".into()],
                ..Actor::user(id)
            },
        };
        World {
            services: Services::new(store, &m),
            amy,
        }
    }

    /// Creates a customer as amy: its id and the save's warnings.
    async fn create(&self, values: Json) -> (i64, Vec<FieldError>) {
        let entity = self
            .services
            .catalog
            .entity("crm", "customer")
            .expect("entity");
        let saved = self
            .services
            .create(&self.amy, &entity, object(values))
            .await
            .expect("saved");
        (saved.id, saved.warnings)
    }

    async fn get(&self, entity: &str, id: i64) -> Map<String, Json> {
        let entity = self.services.catalog.entity("crm", entity).expect("entity");
        self.services
            .reader
            .get(&entity, id, &Access::everything())
            .await
            .expect("reads")
            .values
    }
}

fn object(values: Json) -> Map<String, Json> {
    let Json::Object(values) = values else {
        panic!("values are a mapping")
    };
    values
}

fn warning(field: &str, message: &str) -> FieldError {
    FieldError::new(field, "warning", message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_rule_tells_and_the_record_is_saved() {
    each_backend("warn_rule", async |store: Store| {
        let w = World::new(store).await;
        let (id, warned) = w.create(json!({"name": "Acme", "credit": 500})).await;
        assert_eq!(warned, vec![warning("credit", "Credit above 100")]);
        assert_eq!(
            w.get("customer", id).await["credit"],
            json!(500),
            "saved as sent"
        );

        let (_, quiet) = w.create(json!({"name": "Zenith", "credit": 50})).await;
        assert!(
            quiet.is_empty(),
            "a rule that holds says nothing: {quiet:?}"
        );

        // An update is judged as it leaves the record; its own hook warns too.
        let entity = w
            .services
            .catalog
            .entity("crm", "customer")
            .expect("entity");
        let updated = w
            .services
            .update(&w.amy, &entity, id, 1, object(json!({"credit": 90})))
            .await
            .expect("updates");
        assert_eq!(
            updated.warnings,
            vec![warning("", "Credit moved from 500 to 90")]
        );
        let again = w
            .services
            .update(&w.amy, &entity, id, 2, object(json!({"credit": 120})))
            .await
            .expect("a warning never refuses");
        assert_eq!(
            again.warnings,
            vec![
                warning("credit", "Credit above 100"),
                warning("", "Credit moved from 90 to 120"),
            ]
        );
        assert_eq!(again.values["credit"], json!(120));

        // A rule of level `error` still refuses, and warnings do not hide it.
        let refused = w
            .services
            .create(
                &w.amy,
                &entity,
                object(json!({"name": "Refused", "credit": 500})),
            )
            .await
            .expect_err("refused");
        let codes: Vec<String> = refused
            .field_errors()
            .iter()
            .map(|e| e.code.clone())
            .collect();
        assert_eq!(codes, vec!["rule"]);

        // A warning rule that fails to run warns with where it stopped; it never refuses.
        let (_, broken) = w.create(json!({"name": "Broken"})).await;
        assert_eq!(broken.len(), 1, "{broken:?}");
        assert_eq!(broken[0].code, "warning");
        assert!(
            broken[0]
                .message
                .starts_with("rule `broken_warning` (entities/customer.yaml:"),
            "{broken:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_in_a_hook_is_returned_with_the_saved_record() {
    each_backend("warn_hook", async |store: Store| {
        let w = World::new(store).await;
        let (_, first) = w.create(json!({"name": "Globex Shanghai"})).await;
        assert!(first.is_empty(), "nothing similar yet: {first:?}");
        let (id, warned) = w.create(json!({"name": "Globex Beijing"})).await;
        assert_eq!(
            warned,
            vec![warning("", "Similar customers 相似客户: Globex Shanghai")]
        );
        assert_eq!(w.get("customer", id).await["name"], json!("Globex Beijing"));

        // A hook that changes its record: the rules judge the record as written.
        let (id, capped) = w.create(json!({"name": "Capped Co", "credit": 500})).await;
        assert_eq!(capped, vec![warning("", "Credit capped at 100")]);
        assert_eq!(w.get("customer", id).await["credit"], json!(100));

        // What a hook's write of another record warns is not this change's.
        let (_, nested) = w.create(json!({"name": "With task"})).await;
        assert!(nested.is_empty(), "{nested:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_returns_the_warnings_of_its_effects_rules_and_save() {
    each_backend("warn_action", async |store: Store| {
        let w = World::new(store).await;
        let (id, _) = w.create(json!({"name": "Initech", "credit": 50})).await;
        let entity = w
            .services
            .catalog
            .entity("crm", "customer")
            .expect("entity");
        let done = w
            .services
            .act(&w.amy, &entity, id, "check", Decision::default())
            .await
            .expect("acts");
        assert!(done.completed);
        assert_eq!(done.record.values["checked"], json!(true));
        assert_eq!(
            done.warnings,
            vec![
                warning("", "Checked by an effect"),
                warning("", "Checked by a rule"),
            ]
        );
    })
    .await;
}
