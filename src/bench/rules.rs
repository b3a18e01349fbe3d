//! The `rules` suite: what model logic costs. A workflow guard and a computed
//! field evaluated on their compiled scripts, per evaluation, and a workflow
//! action over HTTP, each against a plain PATCH of the same record over HTTP
//! (32 connections) in the same run.

use std::time::{Duration, Instant};

use rhai::{Dynamic, Scope};
use serde_json::{Map, Value as Json, json};
use trellis_engine::model::FieldType;
use trellis_engine::script::CompiledScript;
use trellis_runtime::catalog::{EntityModel, FieldModel};
use trellis_runtime::record::value::{datetime_text, decimal};
use trellis_runtime::serve::{AppState, router};
use trellis_runtime::{Access, Actor};

use super::http::{CONNECTIONS, PASSWORD, Request, agent, listen, load, token};
use super::{Backend, Case, Report};

const APP: &str = "name: bench\nlabel: Bench\n";
const ORDER: &str = r#"
label: Order
title: number
fields:
  number: {type: text, required: true}
  customer: {type: text}
  region: {type: select, options: [east, west, north, south]}
  priority: {type: select, options: [low, normal, high]}
  owner: {type: user}
  opened_on: {type: date}
  due_on: {type: date}
  amount: {type: money}
  paid: {type: boolean}
  note: {type: text}
  lines:
    type: table
    fields:
      item: {type: text}
      qty: {type: integer}
      price: {type: money}
      discount: {type: percent}
  total:
    type: money
    computed: "lines.reduce(|sum, l| sum + l.qty * l.price * (1.0 - l.discount / 100.0), 0.0).round(2)"
"#;
/// Two states to toggle between (and a final one, which a workflow needs).
const WORKFLOW: &str = r#"
entity: order
field: status
states:
  open: {initial: true}
  held: {}
  closed: {final: true}
transitions:
  - action: hold
    from: open
    to: held
    guard:
      script: amount < 5000.0 && status == "open" && days_between(opened_on, today) < 30
      message: {en: Only recent open orders under 5000 can be held, zh: 仅可暂停近期且金额低于 5000 的订单}
  - action: release
    from: held
    to: open
  - action: close
    from: "*"
    to: closed
"#;
/// The records written to. Request `i` goes to record `i % RECORDS`; with a
/// multiple of [`CONNECTIONS`], each record is only ever sent by one connection,
/// in order, so its version and state are known before each request.
pub const RECORDS: usize = 320;
const _: () = assert!(RECORDS.is_multiple_of(CONNECTIONS));
pub const LINES: usize = 20;
/// Evaluations of each evaluation case per request of an HTTP case.
const EVALUATIONS_PER_REQUEST: usize = 10;
/// System fields in a script's scope, as the runtime gives them.
const SYSTEM: [&str; 6] = [
    "id",
    "version",
    "created_at",
    "created_by",
    "updated_at",
    "updated_by",
];

/// What the columns mean for this suite, printed under its table.
pub const LEGEND: [&str; 2] = [
    "guard, computed: evaluations/s on one thread; raw: PATCHes/s of the same record over HTTP; ratio: evaluations per PATCH",
    "action: workflow actions/s over HTTP; raw: PATCHes/s; ratio: actions per PATCH",
];

pub fn run(
    backend: Backend,
    requests: usize,
    database_url: Option<String>,
) -> Result<Report, String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    super::store::with_scratch(&runtime, backend, database_url, |store| {
        measure(&runtime, store, requests)
    })
}

/// The number of evaluations of each evaluation case for `requests` requests.
pub fn evaluations(requests: usize) -> usize {
    requests * EVALUATIONS_PER_REQUEST
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    store: &trellis_runtime::Store,
    requests: usize,
) -> Result<Report, String> {
    let model = super::check_app(&[
        ("app.yaml", APP),
        ("entities/order.yaml", ORDER),
        ("workflows/order.yaml", WORKFLOW),
    ])?;
    let (catalog, addr, ids) = runtime.block_on(async {
        trellis_runtime::serve::prepare(store, &model, Some(PASSWORD)).await?;
        let state = AppState::new(store.clone(), &model);
        let order = state.catalog.entity("bench", "order").ok_or("no order")?;
        let records = (0..RECORDS).map(order_values).collect();
        let ids = state
            .writer
            .insert_many(&order, records, &Actor::system(), &Access::everything())
            .await
            .map_err(|e| e.to_string())?;
        let catalog = state.catalog.clone();
        Ok::<_, String>((catalog, listen(router(state)).await?, ids))
    })?;
    let admin = token(addr, "admin")?;
    let path = |i: usize| format!("/api/v1/bench/order/{}", ids[i % RECORDS]);
    // How many requests went to request `i`'s record before it.
    let earlier = |i: usize| (i / RECORDS) as i64;

    // The baseline: a PATCH of a plain field, from the version the record has.
    let patch = |i: usize| {
        Request::Patch(
            path(i),
            json!({"note": format!("patched {i}"), "version": 1 + earlier(i)}),
        )
    };
    let patches = (requests as u64, load(addr, &admin, requests, &patch)?);
    // The record the scripts run over, as the API gives it (still open).
    let sample = get(addr, &admin, &path(0))?;
    let act = |i: usize| {
        let action = if earlier(i) % 2 == 0 {
            "hold"
        } else {
            "release"
        };
        Request::Post(
            format!("{}/actions/{action}", path(i)),
            json!({"comment": "bench"}),
        )
    };
    let actions = (requests as u64, load(addr, &admin, requests, &act)?);

    let entity = catalog.entity("bench", "order").ok_or("no order")?;
    let workflows = trellis_runtime::workflow::compile(&model, &catalog);
    let guard = workflows
        .get(&("bench".to_owned(), "order".to_owned()))
        .and_then(|w| w.action("hold"))
        .and_then(|a| a.guard.clone())
        .ok_or("no guard on hold")?;
    let total = entity
        .computed
        .iter()
        .find(|(name, _)| name == "total")
        .map(|(_, script)| script.clone())
        .ok_or("no computed total")?;
    let context = Context {
        actor: Actor::user(1),
        now: chrono::Utc::now(),
    };
    let sandbox = catalog.sandbox();
    let evaluate = |script: &CompiledScript| {
        let mut scope = scope_for(&entity, &sample, &context);
        sandbox.run(&mut scope, script).map_err(|e| e.to_string())
    };
    // The scope must be the runtime's: the guard holds and the total is the stored one.
    let held = evaluate(&guard)?;
    if held.as_bool() != Ok(true) {
        return Err(format!("the guard gave {held} on {sample:?}"));
    }
    let computed = evaluate(&total)?.try_cast::<rust_decimal::Decimal>();
    let stored = sample.get("total").and_then(decimal);
    if computed.is_none() || computed != stored {
        return Err(format!(
            "the total computed here ({computed:?}) is not the stored one ({stored:?})"
        ));
    }
    let count = evaluations(requests);
    let time = |script: &CompiledScript| -> Result<(u64, Duration), String> {
        let started = Instant::now();
        for _ in 0..count {
            let _ = std::hint::black_box(evaluate(script)?);
        }
        Ok((count as u64, started.elapsed()))
    };
    let cases = vec![
        Case::uneven("guard", time(&guard)?, patches),
        Case::uneven("computed", time(&total)?, patches),
        Case::uneven("action", actions, patches),
    ];
    // The part of an evaluation that is not the script: the same loop running `true`.
    let empty = sandbox.compile("true", &[]).map_err(|e| e.message)?;
    let (ops, elapsed) = time(&empty)?;
    let mut figures = Map::new();
    figures.insert(
        "scope_only_per_s".into(),
        json!(ops as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)),
    );
    Ok(Report { cases, figures })
}

/// The n-th order: ten fields and [`LINES`] lines, opened in the last 20 days.
fn order_values(n: usize) -> Map<String, Json> {
    let today = chrono::Utc::now().date_naive();
    let date = |days: usize| (today + chrono::Duration::days(days as i64 - 20)).to_string();
    let lines: Vec<Json> = (0..LINES)
        .map(|l| {
            let price = (n * 31 + l * 17) % 20_000 + 100;
            let discount = ["0", "5", "10", "12.5"][(n + l) % 4];
            json!({
                "item": format!("item {l}"),
                "qty": (n + l) % 9 + 1,
                "price": format!("{}.{:02}", price / 100, price % 100),
                "discount": discount,
            })
        })
        .collect();
    let region = ["east", "west", "north", "south"][n % 4];
    let priority = ["low", "normal", "high"][n % 3];
    let values = json!({
        "number": format!("R{n:06}"),
        "customer": format!("Customer {}", n % 100),
        "region": region,
        "priority": priority,
        "owner": 1,
        "opened_on": date(n % 20),
        "due_on": date(n % 20 + 30),
        "amount": format!("{}.{:02}", n % 4_000, n % 100),
        "paid": n.is_multiple_of(2),
        "note": "bench",
        "lines": lines,
    });
    values.as_object().cloned().unwrap_or_default()
}

fn get(addr: std::net::SocketAddr, token: &str, path: &str) -> Result<Map<String, Json>, String> {
    let text = agent()
        .get(format!("http://{addr}{path}"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .map_err(|e| e.to_string())?
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    match serde_json::from_str(&text) {
        Ok(Json::Object(record)) => Ok(record),
        _ => Err(format!("GET {path}: {text}")),
    }
}

/// The user and clock of a write, as scripts see them.
struct Context {
    actor: Actor,
    now: chrono::DateTime<chrono::Utc>,
}

/// The scope the runtime gives a script over a record (guards, computed
/// fields: `scope_for` in the runtime's `write::prepare`), built afresh for
/// each evaluation as there: every field, each table as an array of maps, the
/// system fields, `record`, `user`, `today` and `now`.
fn scope_for(entity: &EntityModel, record: &Map<String, Json>, cx: &Context) -> Scope<'static> {
    let value = |name: &str| record.get(name).unwrap_or(&Json::Null);
    let mut scope = Scope::new();
    for (name, field) in &entity.fields {
        scope.push_dynamic(name.clone(), dynamic_of(value(name), field));
    }
    for (name, lines) in &entity.lines {
        let rows: rhai::Array = value(name)
            .as_array()
            .into_iter()
            .flatten()
            .map(|row| {
                let mut map = rhai::Map::new();
                for (child, f) in &lines.fields {
                    let cell = row.get(child).unwrap_or(&Json::Null);
                    map.insert(child.as_str().into(), dynamic_of(cell, f));
                }
                Dynamic::from_map(map)
            })
            .collect();
        scope.push_dynamic(name.clone(), Dynamic::from_array(rows));
    }
    for system in SYSTEM {
        scope.push_dynamic(system, plain(value(system)));
    }
    let mut map = rhai::Map::new();
    for (name, field) in &entity.fields {
        map.insert(name.as_str().into(), dynamic_of(value(name), field));
    }
    scope.push_dynamic("record", Dynamic::from_map(map));
    let user = rhai::serde::to_dynamic(&cx.actor.attributes).unwrap_or(Dynamic::UNIT);
    scope.push_dynamic("user", user);
    let today = cx.now.date_naive().format("%Y-%m-%d").to_string();
    scope.push_dynamic("today", Dynamic::from(today));
    scope.push_dynamic("now", Dynamic::from(datetime_text(cx.now)));
    scope
}

/// A field value as a script sees it: exact numbers as decimals, the rest as is.
fn dynamic_of(value: &Json, field: &FieldModel) -> Dynamic {
    match field.def.kind {
        FieldType::Decimal | FieldType::Money | FieldType::Percent => {
            decimal(value).map_or(Dynamic::UNIT, Dynamic::from)
        }
        _ => plain(value),
    }
}

fn plain(value: &Json) -> Dynamic {
    if value.is_null() {
        return Dynamic::UNIT;
    }
    rhai::serde::to_dynamic(value).unwrap_or(Dynamic::UNIT)
}
