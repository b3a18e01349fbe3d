//! Workflows at run time, on SQLite and PostgreSQL: who may act, guards,
//! required fields, effects that create records, countersign and quorum,
//! rejection, withdraw, transfer, add-sign, delegation, the history, and one
//! winner among parallel attempts.

mod common;

use std::sync::Arc;

use common::{count, each_backend, model};
use sea_orm::ConnectionTrait;
use serde_json::{Map, Value as Json, json};
use trellis_engine::model::Operation;
use trellis_runtime::account::{AccountChange, create_user};
use trellis_runtime::permission::{Permissions, User};
use trellis_runtime::schedule::Scheduler;
use trellis_runtime::workflow::approvers::Me;
use trellis_runtime::workflow::delegation;
use trellis_runtime::workflow::history::Kind;
use trellis_runtime::workflow::{Decision, Workflows};
use trellis_runtime::{Access, Actor, Catalog, RecordError, RecordWriter, Store};

const APP: &str = "name: buy\nlabel: Buying\n";
const REQUEST: &str = r#"
label: Purchase request
title: title
fields:
  title: {type: text, required: true}
  owner: {type: user, default: $user.id}
  approver: {type: user}
  amount: {type: money}
  po_number: {type: text}
  reason: {type: text}
  decided_on: {type: date, read_only: true}
  order: {type: link, target: purchase_order}
  contact_email: {type: email}
  portal: {type: user}
  items:
    type: table
    fields:
      supplier: {type: text}
      product: {type: text}
      qty: {type: integer}
actions:
  - action: spin
    roles: [finance]
    guard:
      script: "let i = 0; while i >= 0 { i += 1; } true"
      message: {en: Never shown}
  - action: open_portal
    roles: [finance]
    effects:
      - create_account:
          username: =title
          email: =contact_email
          display_name: ="Portal of " + title
          roles: [staff]
          link_back: portal
rules:
  - name: book_budget
    on: transition
    actions: [order]
    script: |
      let found = find("budget", #{ name: "main" });
      if found.len() > 0 {
        let budget = found[0];
        let spent = budget.spent + record.amount;
        update("budget", budget.id, #{ spent: spent });
        if spent > budget.limit { throw "the main budget would be overspent"; }
        record.reason = "booked on " + budget.name;
      }
"#;
const BUDGET: &str = r#"
label: Budget
title: name
fields:
  name: {type: text, required: true}
  limit: {type: money}
  spent: {type: money, default: 0}
  cancelled: {type: integer, default: 0}
"#;
const ORDER: &str = r#"
label: Purchase order
title: supplier
fields:
  supplier: {type: text, required: true}
  request: {type: link, target: request}
  lines:
    type: table
    fields:
      product: {type: text}
      qty: {type: integer}
"#;
const WORKFLOW: &str = r#"
entity: request
field: status
states:
  draft: {initial: true}
  submitted:
    locked: true
    due: {after: 2d, remind_before: 1d, escalate_to: [{role: board}]}
  review: {locked: true}
  board: {locked: true}
  approved:
    require: [po_number]
    on_enter:
      - set: {decided_on: $today}
  ordered: {final: true}
  withdrawn: {final: true}
transitions:
  - action: submit
    from: draft
    to: submitted
    users: [owner]
    require: [approver]
    guard:
      script: amount != () && amount > 0
      message: {en: The amount must be positive}
  - action: approve
    from: submitted
    to: review
    users: [approver]
  - action: reject
    from: [submitted, review, board]
    to: draft
    users: [approver]
    roles: [finance, board]
    input: [reason]
    require: [reason]
    comment_required: true
  - action: finance_ok
    from: review
    to: board
    roles: [finance]
    approval: all
  - action: board_ok
    from: board
    to: approved
    roles: [board]
    approval: {quorum: 2}
    input: [po_number]
  - action: order
    from: approved
    to: ordered
    roles: [finance]
    effects:
      - create:
          entity: purchase_order
          split_by: supplier
          fields:
            supplier: =split
            request: =id
          lines:
            lines:
              from: items
              fields:
                product: =product
                qty: =qty
          link_back: order
  - action: cancel
    from: draft
    to: withdrawn
    users: [owner]
    effects:
      - run: |
          for budget in find("budget", #{}) {
            update("budget", budget.id, #{ cancelled: budget.cancelled + 1 });
          }
"#;
const ROLES: &str = r#"
roles:
  staff:
    label: Staff
    permissions:
      request: {allow: [create, read, update]}
      purchase_order: {allow: [read]}
      budget: {allow: [read]}
  finance:
    label: Finance
    permissions:
      request: {allow: [read]}
      purchase_order: {allow: [read]}
      budget: {allow: [read, update]}
  board:
    label: Board
    permissions:
      request: {allow: [read]}
"#;

struct World {
    store: Store,
    workflows: Workflows,
    writer: RecordWriter,
    catalog: Arc<Catalog>,
    permissions: Arc<Permissions>,
    users: std::collections::HashMap<&'static str, User>,
}

fn world_model() -> trellis_engine::CheckedModel {
    model(&[
        ("app.yaml", APP),
        ("entities/request.yaml", REQUEST),
        ("entities/purchase_order.yaml", ORDER),
        ("entities/budget.yaml", BUDGET),
        ("workflows/request.yaml", WORKFLOW),
        ("roles.yaml", ROLES),
    ])
}

impl World {
    async fn new(store: Store) -> World {
        let m = world_model();
        trellis_runtime::serve::prepare(&store, &m, Some("admin-password"))
            .await
            .expect("deploys");
        let catalog = Arc::new(Catalog::new(&m));
        let writer = RecordWriter::new(store.clone(), catalog.clone());
        let permissions = Arc::new(Permissions::new(&m));
        let workflows = Workflows::new(&m, catalog.clone(), writer.clone(), permissions.clone());
        let mut users = std::collections::HashMap::new();
        for (name, roles) in [
            ("olga", vec!["staff"]),
            ("adam", vec!["staff"]),
            ("deputy", vec!["staff"]),
            ("helper", vec!["staff"]),
            ("fin1", vec!["finance"]),
            ("fin2", vec!["finance"]),
            ("b1", vec!["board"]),
            ("b2", vec!["board"]),
            ("b3", vec!["board"]),
        ] {
            let id = create_user(
                &store,
                AccountChange {
                    username: Some(name.into()),
                    password: Some("password-1".into()),
                    roles: Some(roles.iter().map(|r| r.to_string()).collect()),
                    ..Default::default()
                },
            )
            .await
            .expect("creates the user");
            users.insert(
                name,
                User {
                    id,
                    username: name.into(),
                    roles: roles.iter().map(|r| r.to_string()).collect(),
                    actor: Actor::user(id),
                },
            );
        }
        World {
            permissions,
            store,
            workflows,
            writer,
            catalog,
            users,
        }
    }

    fn user(&self, name: &str) -> User {
        self.users[name].clone()
    }

    async fn me(&self, name: &str) -> Me {
        let entity = self.catalog.entity("buy", "request").expect("entity");
        let user = self.user(name);
        let can_update = self
            .permissions
            .access(&user, &entity, Operation::Update)
            .is_some();
        self.workflows.me(user, can_update).await.expect("me")
    }

    /// A draft request by olga, approver adam, items from two suppliers.
    async fn draft(&self, amount: &str) -> i64 {
        let entity = self.catalog.entity("buy", "request").expect("entity");
        let olga = self.user("olga");
        let input = json!({
            "title": "Laptops", "approver": self.user("adam").id, "amount": amount,
            "items": [
                {"supplier": "Acme", "product": "laptop", "qty": 3},
                {"supplier": "Bolt", "product": "dock", "qty": 3},
                {"supplier": "Acme", "product": "bag", "qty": 3},
            ],
        });
        let Json::Object(input) = input else {
            unreachable!()
        };
        self.writer
            .create(&entity, input, &olga.actor, &Access::everything())
            .await
            .expect("creates the draft")
            .id
    }

    async fn act(
        &self,
        who: &str,
        id: i64,
        action: &str,
        values: Json,
        comment: Option<&str>,
    ) -> Result<trellis_runtime::workflow::Outcome, RecordError> {
        let entity = self.catalog.entity("buy", "request").expect("entity");
        let me = self.me(who).await;
        let access = self
            .permissions
            .access(&me.user, &entity, Operation::Read)
            .expect("may read");
        let Json::Object(values) = values else {
            panic!("values are a mapping")
        };
        let decision = Decision {
            comment: comment.map(str::to_owned),
            values,
            version: None,
        };
        self.workflows
            .act(&entity, id, action, decision, &me, &access)
            .await
    }

    async fn allowed(&self, who: &str, id: i64) -> Vec<String> {
        let entity = self.catalog.entity("buy", "request").expect("entity");
        let me = self.me(who).await;
        let record = trellis_runtime::RecordReader::new(self.store.clone(), self.catalog.clone())
            .get(&entity, id, &Access::everything())
            .await
            .expect("reads");
        self.workflows
            .allowed(&entity, &record, &me)
            .await
            .expect("allowed actions")
            .into_iter()
            .map(|a| a.action)
            .collect()
    }

    async fn state(&self, id: i64) -> String {
        let entity = self.catalog.entity("buy", "request").expect("entity");
        let record = trellis_runtime::RecordReader::new(self.store.clone(), self.catalog.clone())
            .get(&entity, id, &Access::everything())
            .await
            .expect("reads");
        record.values["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn history(&self, id: i64) -> Vec<trellis_runtime::workflow::history::Entry> {
        let entity = self.catalog.entity("buy", "request").expect("entity");
        self.workflows.history(&entity, id).await.expect("history")
    }

    /// Moves a fresh request to `review` (submitted by olga, approved by adam).
    async fn in_review(&self) -> i64 {
        let id = self.draft("1200.00").await;
        self.act("olga", id, "submit", json!({}), None)
            .await
            .expect("submits");
        self.act("adam", id, "approve", json!({}), None)
            .await
            .expect("approves");
        id
    }
}

fn field_errors(e: RecordError) -> Vec<(String, String, String)> {
    match e {
        RecordError::Invalid(errors) => errors
            .into_iter()
            .map(|e| (e.field, e.code, e.message))
            .collect(),
        other => panic!("expected field errors, got {other:?}"),
    }
}

#[tokio::test]
async fn actions_follow_state_people_roles_and_guards() {
    each_backend("wf_allowed", async |store| {
        let w = World::new(store).await;
        let id = w.draft("0").await;
        assert_eq!(
            w.allowed("olga", id).await,
            vec!["cancel"],
            "the guard hides submit at 0"
        );
        assert!(
            w.allowed("adam", id).await.is_empty(),
            "adam is not the owner"
        );
        let refused = w
            .act("olga", id, "submit", json!({}), None)
            .await
            .expect_err("guarded");
        assert_eq!(
            field_errors(refused),
            vec![(
                "".into(),
                "guard".into(),
                "The amount must be positive".into()
            )]
        );
        let entity = w.catalog.entity("buy", "request").expect("entity");
        let olga = w.user("olga");
        let mut patch = Map::new();
        patch.insert("amount".into(), json!("50.00"));
        w.writer
            .update(&entity, id, 1, patch, &olga.actor, &Access::everything())
            .await
            .expect("edits the draft");
        assert_eq!(w.allowed("olga", id).await, vec!["submit", "cancel"]);
        let refused = w
            .act("adam", id, "submit", json!({}), None)
            .await
            .expect_err("not his");
        assert!(matches!(refused, RecordError::Refused(_)), "{refused:?}");
        w.act("olga", id, "submit", json!({}), None)
            .await
            .expect("submits");
        assert_eq!(w.state(id).await, "submitted");
        assert_eq!(w.allowed("adam", id).await, vec!["approve", "reject"]);
        assert!(w.allowed("olga", id).await.is_empty());
        let refused = w
            .act("olga", id, "cancel", json!({}), None)
            .await
            .expect_err("wrong state");
        assert!(
            matches!(refused, RecordError::WrongState { .. }),
            "{refused:?}"
        );

        // The state field is the workflow's: no PATCH sets it, and a locked
        // state refuses edits altogether.
        let mut patch = Map::new();
        patch.insert("title".into(), json!("Changed"));
        let locked = w
            .writer
            .update(&entity, id, 3, patch, &olga.actor, &Access::everything())
            .await
            .expect_err("locked");
        assert_eq!(field_errors(locked)[0].1, "locked");
        // Nor can it be deleted.
        let kept = w
            .writer
            .delete(&entity, id, &olga.actor, &Access::everything())
            .await
            .expect_err("locked");
        assert_eq!(field_errors(kept)[0].1, "locked");
        assert_eq!(w.state(id).await, "submitted");
    })
    .await;
}

#[tokio::test]
async fn the_state_field_changes_only_through_actions() {
    each_backend("wf_state_patch", async |store| {
        let w = World::new(store).await;
        let id = w.draft("10.00").await;
        let entity = w.catalog.entity("buy", "request").expect("entity");
        let mut patch = Map::new();
        patch.insert("status".into(), json!("approved"));
        let refused = w
            .writer
            .update(
                &entity,
                id,
                1,
                patch,
                &w.user("olga").actor,
                &Access::everything(),
            )
            .await
            .expect_err("refused");
        assert_eq!(field_errors(refused)[0].0, "status");
        assert_eq!(w.state(id).await, "draft");
    })
    .await;
}

#[tokio::test]
async fn required_fields_are_asked_before_the_action_and_on_entering_a_state() {
    each_backend("wf_required", async |store| {
        let w = World::new(store).await;
        let entity = w.catalog.entity("buy", "request").expect("entity");
        let olga = w.user("olga");
        let Json::Object(input) = json!({"title": "No approver", "amount": "5.00"}) else {
            unreachable!()
        };
        let id = w
            .writer
            .create(&entity, input, &olga.actor, &Access::everything())
            .await
            .expect("creates")
            .id;
        let refused = w
            .act("olga", id, "submit", json!({}), None)
            .await
            .expect_err("approver");
        assert_eq!(field_errors(refused)[0].0, "approver");

        let id = w.in_review().await;
        for who in ["fin1", "fin2"] {
            w.act(who, id, "finance_ok", json!({}), None)
                .await
                .expect("finance");
        }
        w.act("b1", id, "board_ok", json!({}), None)
            .await
            .expect("first board vote");
        // Entering `approved` needs a PO number: the completing vote must bring one.
        let refused = w
            .act("b2", id, "board_ok", json!({}), None)
            .await
            .expect_err("po");
        let errors = field_errors(refused);
        assert_eq!(
            (errors[0].0.as_str(), errors[0].1.as_str()),
            ("po_number", "required")
        );
        assert_eq!(w.state(id).await, "board", "nothing moved");
        let refused = w
            .act("b2", id, "board_ok", json!({"title": "sneaky"}), None)
            .await
            .expect_err("not an input");
        assert_eq!(field_errors(refused)[0].1, "not_an_input");
        let done = w
            .act("b2", id, "board_ok", json!({"po_number": "PO-7"}), None)
            .await
            .expect("completes");
        assert!(done.completed);
        assert_eq!(done.record.values["status"], "approved");
        assert_eq!(done.record.values["po_number"], "PO-7");
        assert!(
            done.record.values["decided_on"].is_string(),
            "on_enter set the date"
        );
    })
    .await;
}

#[tokio::test]
async fn an_action_creates_one_linked_record_per_supplier() {
    each_backend("wf_split", async |store| {
        let w = World::new(store).await;
        let id = w.in_review().await;
        for who in ["fin1", "fin2"] {
            w.act(who, id, "finance_ok", json!({}), None)
                .await
                .expect("finance");
        }
        w.act("b1", id, "board_ok", json!({}), None)
            .await
            .expect("b1");
        w.act("b3", id, "board_ok", json!({"po_number": "PO-9"}), None)
            .await
            .expect("b3");
        let done = w
            .act("fin1", id, "order", json!({}), None)
            .await
            .expect("orders");
        assert_eq!(done.record.values["status"], "ordered");
        let first = done.record.values["order"].as_i64().expect("linked back");
        let orders = w
            .store
            .connection()
            .query_all_raw(sea_orm::Statement::from_string(
                w.store.dialect().backend(),
                format!(
                    "SELECT id, supplier FROM buy__purchase_order WHERE request = {id} ORDER BY id"
                ),
            ))
            .await
            .expect("orders");
        let suppliers: Vec<String> = orders
            .iter()
            .map(|r| r.try_get_by_index::<String>(1).expect("supplier"))
            .collect();
        assert_eq!(suppliers, vec!["Acme", "Bolt"]);
        assert_eq!(orders[0].try_get_by_index::<i64>(0).expect("id"), first);
        let acme_lines = count(
            &w.store,
            &format!("SELECT COUNT(*) FROM buy__purchase_order__lines WHERE parent_id = {first}"),
        )
        .await;
        assert_eq!(acme_lines, 2, "laptop and bag go to Acme");
        let all_lines = count(&w.store, "SELECT COUNT(*) FROM buy__purchase_order__lines").await;
        assert_eq!(all_lines, 3);
    })
    .await;
}

#[tokio::test]
async fn countersign_needs_everyone_and_a_quorum_stops_at_n() {
    each_backend("wf_approvals", async |store| {
        let w = World::new(store).await;
        let id = w.in_review().await;
        let first = w
            .act("fin1", id, "finance_ok", json!({}), None)
            .await
            .expect("fin1");
        assert!(!first.completed, "fin2 must countersign");
        assert_eq!(w.state(id).await, "review");
        assert!(
            w.allowed("fin1", id)
                .await
                .iter()
                .all(|a| a != "finance_ok"),
            "fin1 has signed"
        );
        let again = w
            .act("fin1", id, "finance_ok", json!({}), None)
            .await
            .expect_err("twice");
        assert!(matches!(again, RecordError::Refused(_)));
        let second = w
            .act("fin2", id, "finance_ok", json!({}), None)
            .await
            .expect("fin2");
        assert!(second.completed);
        assert_eq!(w.state(id).await, "board");

        let one = w
            .act("b1", id, "board_ok", json!({}), None)
            .await
            .expect("b1");
        assert!(!one.completed);
        let two = w
            .act("b2", id, "board_ok", json!({"po_number": "PO-1"}), None)
            .await
            .expect("b2");
        assert!(two.completed, "two of three is the quorum");
        assert_eq!(w.state(id).await, "approved");
        let late = w
            .act("b3", id, "board_ok", json!({}), None)
            .await
            .expect_err("too late");
        assert!(matches!(late, RecordError::WrongState { .. }), "{late:?}");
        let kinds: Vec<Kind> = w.history(id).await.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                Kind::Transition,
                Kind::Transition,
                Kind::Approval,
                Kind::Transition,
                Kind::Approval,
                Kind::Transition
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn rejection_goes_back_to_a_named_state_with_a_reason() {
    each_backend("wf_reject", async |store| {
        let w = World::new(store).await;
        let id = w.in_review().await;
        let refused = w
            .act("fin1", id, "reject", json!({"reason": "too dear"}), None)
            .await
            .expect_err("needs a comment");
        assert_eq!(field_errors(refused)[0].0, "comment");
        let refused = w
            .act("fin1", id, "reject", json!({}), Some("no"))
            .await
            .expect_err("needs a reason");
        assert_eq!(field_errors(refused)[0].0, "reason");
        let done = w
            .act(
                "fin1",
                id,
                "reject",
                json!({"reason": "too dear"}),
                Some("Ask for a quote"),
            )
            .await
            .expect("rejects");
        assert_eq!(done.record.values["status"], "draft");
        assert_eq!(done.record.values["reason"], "too dear");
        let last = w.history(id).await.pop().expect("a row");
        assert_eq!(last.action.as_deref(), Some("reject"));
        assert_eq!(
            (last.from_state.as_deref(), last.to_state.as_deref()),
            (Some("review"), Some("draft"))
        );
        assert_eq!(last.comment.as_deref(), Some("Ask for a quote"));
        assert_eq!(last.via.as_deref(), Some("role finance"));
        assert_eq!(last.user_id, Some(w.user("fin1").id));
    })
    .await;
}

#[tokio::test]
async fn withdraw_transfer_add_sign_and_delegation_change_who_may_act() {
    each_backend("wf_moves", async |store| {
        let w = World::new(store).await;
        let entity = w.catalog.entity("buy", "request").expect("entity");
        let all = Access::everything();

        // Withdraw: the submitter, before anyone decided.
        let id = w.draft("10.00").await;
        w.act("olga", id, "submit", json!({}), None)
            .await
            .expect("submits");
        let adam = w.me("adam").await;
        let refused = w
            .workflows
            .withdraw(&entity, id, None, &adam, &all)
            .await
            .expect_err("not his");
        assert!(matches!(refused, RecordError::Refused(_)));
        let olga = w.me("olga").await;
        let back = w
            .workflows
            .withdraw(&entity, id, Some("typo"), &olga, &all)
            .await
            .expect("withdraws");
        assert_eq!(back.record.values["status"], "draft");
        assert_eq!(
            w.history(id).await.last().map(|e| e.kind),
            Some(Kind::Withdraw)
        );

        // Transfer: adam hands his turn to the helper.
        w.act("olga", id, "submit", json!({}), None)
            .await
            .expect("submits again");
        let helper = w.user("helper").id;
        w.workflows
            .hand_over(
                &entity,
                id,
                Kind::Transfer,
                helper,
                Some("on leave"),
                &adam,
                &all,
            )
            .await
            .expect("transfers");
        assert!(
            w.allowed("adam", id).await.is_empty(),
            "adam gave his turn away"
        );
        assert_eq!(w.allowed("helper", id).await, vec!["approve", "reject"]);
        // Once someone decided, the submitter can no longer withdraw.
        let done = w
            .act("helper", id, "approve", json!({}), None)
            .await
            .expect("helper approves");
        assert_eq!(done.record.values["status"], "review");
        let last = w.history(id).await.pop().expect("row");
        assert_eq!(
            last.via.as_deref(),
            Some(&*format!("transferred by #{}", w.user("adam").id))
        );
        let late = w
            .workflows
            .withdraw(&entity, id, None, &olga, &all)
            .await
            .expect_err("decided");
        assert!(matches!(late, RecordError::Refused(_)));

        // Add-sign: fin1 asks the helper to sign before finance continues.
        let fin1 = w.me("fin1").await;
        w.workflows
            .hand_over(&entity, id, Kind::AddSign, helper, None, &fin1, &all)
            .await
            .expect("adds a signer");
        assert_eq!(
            w.allowed("fin2", id).await,
            vec!["open_portal"],
            "finance waits for the helper (a button is not part of the approval)"
        );
        let signed = w
            .act("helper", id, "finance_ok", json!({}), Some("fine"))
            .await
            .expect("signs");
        assert!(!signed.completed);
        assert_eq!(
            w.history(id).await.last().map(|e| e.kind),
            Some(Kind::Signoff)
        );
        assert!(
            w.allowed("fin2", id)
                .await
                .contains(&"finance_ok".to_owned())
        );

        // Delegation: adam is away; his deputy approves in his name.
        let id = w.draft("10.00").await;
        w.act("olga", id, "submit", json!({}), None)
            .await
            .expect("submits");
        assert!(w.allowed("deputy", id).await.is_empty());
        let today = chrono::Utc::now().date_naive();
        let (adam, deputy) = (w.user("adam").id, w.user("deputy").id);
        delegation::create(
            &w.store,
            adam,
            deputy,
            today - chrono::Days::new(1),
            today + chrono::Days::new(1),
        )
        .await
        .expect("delegates");
        let listed = delegation::list(&w.store, deputy).await.expect("lists");
        assert_eq!(listed.len(), 1, "the deputy sees it too: {listed:?}");
        assert_eq!(
            (listed[0]["user"].as_i64(), listed[0]["deputy"].as_i64()),
            (Some(adam), Some(deputy))
        );
        assert_eq!(w.allowed("deputy", id).await, vec!["approve", "reject"]);
        w.act("deputy", id, "approve", json!({}), None)
            .await
            .expect("deputy approves");
        let last = w.history(id).await.pop().expect("row");
        assert_eq!(
            last.via.as_deref(),
            Some(&*format!(
                "deputy of #{} (field approver)",
                w.user("adam").id
            ))
        );
        // Only the person who delegated ends the delegation.
        let given = listed[0]["id"].as_i64().expect("an id");
        assert!(
            !delegation::remove(&w.store, deputy, given)
                .await
                .expect("runs")
        );
        assert!(
            delegation::remove(&w.store, adam, given)
                .await
                .expect("runs")
        );
        assert!(
            delegation::list(&w.store, adam)
                .await
                .expect("lists")
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn of_sixteen_parallel_transitions_exactly_one_wins() {
    each_backend("wf_race", async |store| {
        let w = Arc::new(World::new(store).await);
        let id = w.draft("10.00").await;
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let w = w.clone();
                tokio::spawn(async move { w.act("olga", id, "submit", json!({}), None).await })
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            match task.await.expect("joins") {
                Ok(_) => wins += 1,
                Err(RecordError::WrongState { .. } | RecordError::Conflict { .. }) => {}
                Err(other) => panic!("unexpected failure: {other:?}"),
            }
        }
        assert_eq!(wins, 1);
        let rows = w.history(id).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(w.state(id).await, "submitted");
    })
    .await;
}

#[tokio::test]
async fn hooks_read_and_write_records_inside_the_action_and_its_permissions() {
    each_backend("wf_hooks", async |store| {
        let w = World::new(store.clone()).await;
        let budgets = w.catalog.entity("buy", "budget").expect("budget");
        let main = w
            .writer
            .create(
                &budgets,
                json!({"name": "main", "limit": "2000.00"})
                    .as_object()
                    .cloned()
                    .expect("map"),
                &Actor::system(),
                &Access::everything(),
            )
            .await
            .expect("a budget")
            .id;
        let reader = trellis_runtime::RecordReader::new(store.clone(), w.catalog.clone());
        let budget = async || {
            reader
                .get(&budgets, main, &Access::everything())
                .await
                .expect("the budget")
                .values
        };
        let approved = async || {
            let id = w.in_review().await;
            for who in ["fin1", "fin2"] {
                w.act(who, id, "finance_ok", json!({}), None)
                    .await
                    .expect("finance");
            }
            w.act("b1", id, "board_ok", json!({}), None)
                .await
                .expect("b1");
            w.act("b3", id, "board_ok", json!({"po_number": "PO-1"}), None)
                .await
                .expect("b3");
            id
        };

        // The transition rule books the order on the budget it finds, and
        // changes the record being moved.
        let first = approved().await;
        let done = w
            .act("fin1", first, "order", json!({}), None)
            .await
            .expect("orders");
        assert_eq!(budget().await["spent"], "1200.00");
        assert_eq!(done.record.values["reason"], "booked on main");

        // A hook that throws refuses the action: its own write is undone and
        // the record stays where it was.
        let second = approved().await;
        let refused = w
            .act("fin1", second, "order", json!({}), None)
            .await
            .expect_err("overspent");
        let line = REQUEST
            .lines()
            .position(|l| l.contains("would be overspent"))
            .expect("the throw")
            + 1;
        let (_, code, message) = field_errors(refused).remove(0);
        assert_eq!(code, "hook");
        assert!(
            message.contains(&format!(
                "rule `book_budget` (entities/request.yaml:{line})"
            )) && message.contains("the main budget would be overspent"),
            "{message}"
        );
        assert_eq!(budget().await["spent"], "1200.00");
        assert_eq!(w.state(second).await, "approved");

        // A `run` effect writes with the acting user's permissions: staff may
        // only read budgets, so their cancel is refused and changes nothing.
        let draft = w.draft("10.00").await;
        let refused = w
            .act("olga", draft, "cancel", json!({}), None)
            .await
            .expect_err("no update permission");
        let (_, _, message) = field_errors(refused).remove(0);
        assert!(message.contains("may not update `budget`"), "{message}");
        assert_eq!(w.state(draft).await, "draft");
        assert_eq!(budget().await["cancelled"], 0);
        // Finance may update budgets: their own request's cancel counts.
        let requests = w.catalog.entity("buy", "request").expect("request");
        let fin1 = w.user("fin1");
        let theirs = w
            .writer
            .create(
                &requests,
                json!({"title": "Chairs", "amount": "5.00"})
                    .as_object()
                    .cloned()
                    .expect("map"),
                &fin1.actor,
                &Access::everything(),
            )
            .await
            .expect("a request")
            .id;
        w.act("fin1", theirs, "cancel", json!({}), None)
            .await
            .expect("cancels");
        assert_eq!(budget().await["cancelled"], 1);
        assert_eq!(w.state(theirs).await, "withdrawn");
    })
    .await;
}

#[tokio::test]
async fn a_due_time_reminds_the_approvers_then_escalates_once() {
    each_backend("wf_due", async |store| {
        let w = World::new(store.clone()).await;
        let id = w.draft("10.00").await;
        let submitted_at = chrono::Utc::now();
        w.act("olga", id, "submit", json!({}), None).await.expect("submits");
        let m = world_model();
        let reader = Arc::new(trellis_runtime::RecordReader::new(store.clone(), w.catalog.clone()));
        let scheduler = Scheduler::new(&m, w.catalog.clone(), store.clone(), reader);
        scheduler.register(submitted_at).await.expect("registers");
        let told = async |who: &str, what: &str| {
            count(
                &store,
                &format!(
                    "SELECT COUNT(*) FROM trellis_notifications WHERE user_id = {} AND message LIKE '{what}%'",
                    w.user(who).id
                ),
            )
            .await
        };
        let pass = async |hours: i64| {
            let ran = scheduler
                .tick(submitted_at + chrono::Duration::hours(hours))
                .await
                .expect("ticks");
            ran.into_iter()
                .find(|(name, _)| name == trellis_runtime::schedule::DUE_TIMES)
                .map(|(_, report)| report.notified)
        };
        assert_eq!(pass(12).await, Some(0), "nothing due half a day in");
        assert_eq!(pass(25).await, Some(1), "a day before the due time: a reminder");
        assert_eq!(told("adam", "Reminder:").await, 1, "the approver is reminded");
        assert_eq!(told("fin1", "Reminder:").await, 1, "so are the roles that may reject");
        assert_eq!(told("b1", "Overdue:").await, 0);
        assert_eq!(pass(49).await, Some(1), "past the due time: escalated");
        assert_eq!(told("b1", "Overdue:").await, 1, "escalate_to is told");
        assert_eq!(pass(60).await, Some(0), "once per entry into the state");
        assert_eq!(told("adam", "Reminder:").await, 1);
        // Leaving the state ends its due time.
        w.act("adam", id, "approve", json!({}), None).await.expect("approves");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM trellis_workflow_due").await, 0);
        // A due row whose record is gone tells nobody and does not come back.
        common::exec(
            &store,
            "INSERT INTO trellis_workflow_due (app, entity, record_id, state, due_at) \
             VALUES ('buy', 'request', 999999, 'submitted', ?)",
            vec![store.dialect().time(submitted_at)],
        )
        .await
        .expect("a stray row");
        assert_eq!(pass(72).await, Some(0));
        assert_eq!(count(&store, "SELECT COUNT(*) FROM trellis_workflow_due").await, 0);
    })
    .await;
}

#[tokio::test]
async fn an_action_opens_a_portal_account_and_mails_its_password() {
    each_backend("wf_account", async |store| {
        let w = World::new(store.clone()).await;
        let requests = w.catalog.entity("buy", "request").expect("request");
        let create = async |title: &str| {
            w.writer
                .create(
                    &requests,
                    json!({"title": title, "contact_email": "buyer@acme.example"})
                        .as_object()
                        .cloned()
                        .expect("map"),
                    &w.user("olga").actor,
                    &Access::everything(),
                )
                .await
                .expect("a request")
                .id
        };
        let id = create("acme-portal").await;
        let done = w
            .act("fin1", id, "open_portal", json!({}), None)
            .await
            .expect("opens");
        let account = done.record.values["portal"].as_i64().expect("linked back");
        let named = common::texts(
            &store,
            &format!("SELECT username FROM trellis_users WHERE id = {account}"),
        )
        .await;
        assert_eq!(named, vec![Some("acme-portal".to_owned())]);
        let roles = common::texts(
            &store,
            &format!("SELECT role FROM trellis_user_roles WHERE user_id = {account}"),
        )
        .await;
        assert_eq!(roles, vec![Some("staff".to_owned())]);
        let mails = common::texts(
            &store,
            "SELECT payload FROM trellis_outbox WHERE channel = 'email'",
        )
        .await;
        assert_eq!(mails.len(), 1, "{mails:?}");
        let mail: Json =
            serde_json::from_str(mails[0].as_deref().unwrap_or_default()).expect("JSON");
        assert_eq!(mail["to"], "buyer@acme.example");
        assert!(
            mail["body"]
                .as_str()
                .is_some_and(|b| b.contains("acme-portal")),
            "{mail}"
        );
        // The same username again: refused, and nothing of it stays.
        let again = create("acme-portal").await;
        let refused = w
            .act("fin1", again, "open_portal", json!({}), None)
            .await
            .expect_err("taken");
        assert!(field_errors(refused)[0].2.contains("taken"));
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM trellis_outbox WHERE channel = 'email'"
            )
            .await,
            1
        );
    })
    .await;
}

#[tokio::test]
async fn a_runaway_guard_is_a_script_error_not_its_message() {
    each_backend("wf_guard_limit", async |store| {
        let w = World::new(store).await;
        let id = w.draft("10.00").await;
        assert!(
            !w.allowed("fin1", id).await.contains(&"spin".to_owned()),
            "not offered"
        );
        let failed = w
            .act("fin1", id, "spin", json!({}), None)
            .await
            .expect_err("stopped");
        let (_, code, message) = field_errors(failed).remove(0);
        assert_eq!(code, "script");
        assert!(
            message.contains("the guard of `spin`") && message.contains("100000 operations"),
            "{message}"
        );
        assert_eq!(w.state(id).await, "draft");
    })
    .await;
}
