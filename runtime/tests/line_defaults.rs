//! On SQLite and PostgreSQL: new lines take their columns' defaults (a
//! literal, a `$today+Nd` date, an `=expression` over the line and its
//! parent) and lines already stored keep what they hold; scripts see the
//! acting user's roles as `user.roles`.

mod common;

use std::sync::Arc;

use common::{each_backend, model};
use serde_json::{Map, Value as Json, json};
use trellis_runtime::{Access, Actor, Catalog, RecordError, RecordWriter, deploy_model};

const ORDER: &str = r#"
label: Order
fields:
  base_price: {type: money, default: 10}
  rush: {type: boolean}
  lines:
    type: table
    fields:
      item: {type: text, required: true}
      unit: {type: text, default: pcs}
      shipped: {type: decimal, scale: 2, default: 0}
      due: {type: date, default: $today+7d}
      price: {type: money, default: "=parent.base_price * 2"}
rules:
  - name: clerks_rush
    on: validate
    script: rush != true || user.roles.contains("clerk")
    field: rush
    message: Only clerks may rush an order
"#;

fn input(v: Json) -> Map<String, Json> {
    v.as_object().cloned().expect("an object")
}

fn with_role(role: &str) -> Actor {
    Actor {
        roles: vec![role.to_owned()],
        ..Actor::user(3)
    }
}

#[tokio::test]
async fn new_lines_take_their_defaults_and_scripts_see_the_roles() {
    each_backend("line_defaults", async |store| {
        let m = model(&[
            ("app.yaml", "name: shop\nlabel: Shop\n"),
            ("entities/order.yaml", ORDER),
        ]);
        deploy_model(&store, &m, false).await.expect("deploys");
        let catalog = Arc::new(Catalog::new(&m));
        let writer = RecordWriter::new(store.clone(), catalog.clone());
        let order = catalog.entity("shop", "order").expect("entity");
        let all = Access::everything();
        let clerk = with_role("clerk");

        let created = writer
            .create(
                &order,
                input(json!({"lines": [{"item": "bolt"}, {"item": "nut", "unit": "box", "price": "3"}]})),
                &clerk,
                &all,
            )
            .await
            .expect("creates");
        let lines = created.values["lines"].as_array().expect("lines").clone();
        let week = (chrono::Utc::now().date_naive() + chrono::Duration::days(7)).to_string();
        assert_eq!(lines[0]["unit"], "pcs");
        assert_eq!(lines[0]["shipped"], "0.00");
        assert_eq!(lines[0]["due"], json!(week));
        assert_eq!(lines[0]["price"], "20.00", "=parent.base_price * 2");
        assert_eq!((&lines[1]["unit"], &lines[1]["price"]), (&json!("box"), &json!("3.00")), "given values stay");

        // A stored line keeps its emptied value; a new line is filled.
        let mut kept = lines[0].clone();
        kept["unit"] = Json::Null;
        let updated = writer
            .update(
                &order,
                created.id,
                created.version,
                input(json!({"lines": [kept, {"item": "washer"}]})),
                &clerk,
                &all,
            )
            .await
            .expect("updates");
        let lines = updated.values["lines"].as_array().expect("lines");
        assert_eq!((&lines[0]["unit"], &lines[1]["unit"]), (&Json::Null, &json!("pcs")));

        // `user.roles` in a rule: a clerk may rush, a buyer may not.
        writer
            .create(&order, input(json!({"rush": true})), &clerk, &all)
            .await
            .expect("a clerk rushes");
        let refused = writer
            .create(&order, input(json!({"rush": true})), &with_role("buyer"), &all)
            .await
            .expect_err("a buyer may not");
        assert!(
            matches!(&refused, RecordError::Invalid(e) if e[0].field == "rush" && e[0].code == "rule"),
            "{refused:?}"
        );
    })
    .await;
}
