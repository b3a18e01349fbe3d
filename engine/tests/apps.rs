//! The apps the project ships and the spec-coverage fixture check clean.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("engine/ has a parent")
        .to_owned()
}

fn assert_clean(dir: &Path) -> trellis_engine::CheckedModel {
    let report = trellis_engine::check(&[dir.to_owned()]);
    assert!(
        report.diagnostics.0.is_empty(),
        "{} should check without errors or warnings:\n{}",
        dir.display(),
        report.diagnostics.render()
    );
    report.model.expect("a clean check yields a model")
}

#[test]
fn every_example_app_checks_clean() {
    let examples = repo().join("examples");
    let mut found = 0;
    for entry in std::fs::read_dir(&examples).expect("examples/ exists") {
        let dir = entry.expect("readable entry").path();
        if dir.join("app.yaml").is_file() {
            assert_clean(&dir);
            found += 1;
        }
    }
    assert!(found >= 1, "no example app found");
}

#[test]
fn the_leave_example_uses_most_of_the_language() {
    let model = assert_clean(&repo().join("examples/leave"));
    let app = model.app("leave").expect("the leave app");
    assert!(app.entities.len() >= 3);
    assert_eq!(app.workflows.len(), 1);
    assert!(!app.dashboards.is_empty() && !app.alerts.is_empty() && !app.jobs.is_empty());
    assert!(!app.tests.is_empty() && !app.data.is_empty() && app.roles.is_some());
    let request = &app.entities["leave_request"].value;
    assert!(request.numbering.is_some() && request.form.is_some() && !request.rules.is_empty());
}

#[test]
fn the_spec_coverage_app_checks_clean() {
    let model = assert_clean(&repo().join("tests/spec-coverage"));
    let app = &model.apps()[0];
    // One workflow per app section of the spec: CRM, SRM, order, WMS, TMS.
    assert!(
        app.workflows.len() >= 5,
        "found {} workflows",
        app.workflows.len()
    );
    let customer = &app.entities["customer"].value;
    let conditional: Vec<_> = customer
        .unique
        .iter()
        .filter(|u| u.when.is_some())
        .collect();
    assert!(
        conditional.len() >= 2,
        "domestic and foreign uniqueness are conditional keys"
    );
    assert!(
        app.scripts.keys().any(|k| k.contains("pricing")),
        "the pricing formula is a Rhai file"
    );
    // P17-P19: the ERP write-back is a push, the registry search a lookup.
    let erp = &app.connectors["erp"].value;
    assert!(erp.operations.values().all(|op| !op.is_lookup()));
    assert!(app.connectors["registry"].value.operations["search"].is_lookup());
    let departed = app.entities["consignment_note"]
        .value
        .actions
        .iter()
        .find(|a| a.action == "export_departed")
        .expect("the departure action");
    assert!(
        departed
            .effects
            .iter()
            .any(|e| matches!(e, trellis_engine::model::Effect::Push(p) if p.connector == "erp")),
        "departure pushes to the ERP"
    );
}

#[test]
fn the_spec_coverage_app_declares_every_entity_of_the_spec() {
    // The entities of apps-spec.md sections 3.1-3.5, as named in the fixture.
    let expected = [
        // 3.1 CRM
        "customer",
        "contact",
        "follow_up",
        "lead",
        "opportunity",
        "opportunity_review",
        "product_requirement",
        "requirement_liaison",
        "competitor",
        "market_activity",
        "task",
        "feedback",
        "care_suggestion",
        "sales_plan",
        "partner_quota",
        // 3.2 SRM
        "supplier",
        "supplier_change",
        "purchase_request",
        "purchase_order",
        "purchase_contract",
        "delivery_plan",
        "goods_receipt",
        "supplier_payment",
        "supplier_invoice",
        // 3.3 Order process
        "product",
        "price_policy",
        "price_authority",
        "quote",
        "project_cost_estimate",
        "sales_contract",
        "sales_order",
        "order_plan",
        "shipment_record",
        "delivery_project",
        "invoice_request",
        "payment_collection",
        "collection_plan",
        "account_adjustment",
        "service_ticket",
        "incentive_budget",
        "fee_accrual",
        // 3.4 WMS
        "warehouse",
        "bin",
        "cargo_owner",
        "sku",
        "inbound_notice",
        "receipt",
        "stock",
        "outbound_notice",
        "ownership_transfer",
        "trip",
        "pick_list",
        "pod",
        "customer_return",
        "stock_adjustment",
        "move_order",
        "return_to_vendor",
        "cycle_count",
        "processing_order",
        "transfer",
        "rate_contract",
        "fee_line",
        "dock_appointment",
        // 3.5 TMS
        "fleet",
        "vehicle",
        "personnel",
        "carrier",
        "freight_contract",
        "route",
        "consignment_note",
        "transport_exception",
        "dispatch_note",
        "freight_bill",
        "repair",
        "fuel_record",
        "key_part",
    ];
    let report = trellis_engine::check(&[repo().join("tests/spec-coverage")]);
    let model = report.model.expect("the fixture checks clean");
    let app = &model.apps()[0];
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|e| !app.entities.contains_key(*e))
        .collect();
    assert!(
        missing.is_empty(),
        "entities of the spec missing from the fixture: {missing:?}"
    );
}
