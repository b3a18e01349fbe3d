//! The `store` suite: a realistic entity (an order with ten typed fields and
//! line items) seeded with N records through the full write pipeline, then read
//! by id, listed a page at a time and aggregated. Every case also runs as
//! hand-written SQL through the same driver in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait, Value};
use serde_json::{Map, Value as Json, json};
use trellis_engine::model::Filter;
use trellis_runtime::read::aggregate::{Grouping, Measure};
use trellis_runtime::{
    Access, Actor, Catalog, Dialect, ListQuery, RecordReader, RecordWriter, Store,
};

use super::{Backend, Case};

const APP: &str = "name: bench\nlabel: Bench\n";
const CUSTOMER: &str =
    "label: Customer\ntitle: name\nfields:\n  name: {type: text, required: true}\n";
/// The order's fields; the raw twin table has the same ones.
const ORDER_FIELDS: &str = r#"
fields:
  number: {type: text}
  customer: {type: link, target: customer}
  status: {type: select, options: [open, shipped, closed]}
  region: {type: select, options: [east, west, north, south]}
  priority: {type: select, options: [low, normal, high]}
  ordered_on: {type: date}
  due: {type: date}
  qty: {type: integer}
  amount: {type: money}
  discount: {type: percent}
  paid: {type: boolean}
  note: {type: text}
  lines:
    type: table
    fields:
      item: {type: text}
      qty: {type: integer}
      price: {type: money}
indexes:
  - fields: [status, region, ordered_on]
  - fields: [status, amount]
"#;

const STATUSES: [&str; 3] = ["open", "shipped", "closed"];
const REGIONS: [&str; 4] = ["east", "west", "north", "south"];

/// A deterministic pseudo-random sequence, so runs are comparable.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound.max(1)
    }
}

/// A line item: item, quantity, price in cents.
type Line = (String, i64, i64);

/// The fields of the i-th order.
fn order(i: u64, customers: &[i64]) -> (Map<String, Json>, Vec<Line>) {
    let mut r = Lcg(i.wrapping_mul(2_654_435_761));
    let day = r.next(365);
    let date = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default()
        + chrono::Duration::days(day as i64);
    let lines: Vec<Line> = (0..2)
        .map(|l| {
            (
                format!("item {l}"),
                r.next(9) as i64 + 1,
                r.next(100_000) as i64 + 100,
            )
        })
        .collect();
    let cents: i64 = lines.iter().map(|(_, q, p)| q * p).sum();
    let priority = ["low", "normal", "high"][r.next(3) as usize];
    let values = json!({
        "number": format!("B{i:08}"),
        "customer": customers[r.next(customers.len() as u64) as usize],
        "status": STATUSES[r.next(3) as usize],
        "region": REGIONS[r.next(4) as usize],
        "priority": priority,
        "ordered_on": date.format("%Y-%m-%d").to_string(),
        "due": (date + chrono::Duration::days(30)).format("%Y-%m-%d").to_string(),
        "qty": lines.iter().map(|l| l.1).sum::<i64>(),
        "amount": format!("{}.{:02}", cents / 100, cents % 100),
        "discount": "5.00",
        "paid": r.next(2) == 0,
        "note": "bench",
    });
    let Json::Object(values) = values else {
        unreachable!("a json! object literal")
    };
    (values, lines)
}

pub async fn run(
    backend: Backend,
    rows: u64,
    batch: u64,
    database_url: Option<String>,
) -> Result<Vec<Case>, String> {
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (store, cleanup) = open(backend, scratch.path(), database_url).await?;
    let result = measure(&store, rows, batch).await;
    store.close().await.map_err(|e| e.to_string())?;
    if let Some((admin, name)) = cleanup {
        admin
            .drop_database(&name)
            .await
            .map_err(|e| e.to_string())?;
    }
    result
}

/// A fresh database: a SQLite file in a scratch folder, or a PostgreSQL database
/// created for the run (and dropped after it).
pub(super) async fn open(
    backend: Backend,
    dir: &std::path::Path,
    url: Option<String>,
) -> Result<(Store, Option<(Store, String)>), String> {
    match backend {
        Backend::Sqlite => Ok((
            Store::open_data_dir(dir).await.map_err(|e| e.to_string())?,
            None,
        )),
        Backend::Postgres => {
            let url = url
                .or_else(|| std::env::var("TRELLIS_TEST_POSTGRES").ok())
                .ok_or("the postgres backend needs --database-url (or DATABASE_URL) pointing at a database the user may create databases from")?;
            let admin = Store::connect(&url).await.map_err(|e| e.to_string())?;
            let name = format!("trellis_bench_{}", std::process::id());
            admin
                .execute_sql(&format!("CREATE DATABASE \"{name}\""))
                .await
                .map_err(|e| e.to_string())?;
            let cut = url
                .split('?')
                .next()
                .unwrap_or(&url)
                .rfind('/')
                .ok_or("a database URL has a path")?;
            let store = Store::connect(&format!("{}/{name}", &url[..cut]))
                .await
                .map_err(|e| e.to_string())?;
            Ok((store, Some((admin, name))))
        }
    }
}

/// Runs `measure` against a fresh store (see [`open`]) on `runtime`, then closes
/// the store and drops its PostgreSQL database, whether or not `measure` succeeded.
pub(super) fn with_scratch<T>(
    runtime: &tokio::runtime::Runtime,
    backend: Backend,
    url: Option<String>,
    measure: impl FnOnce(&Store) -> Result<T, String>,
) -> Result<T, String> {
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (store, cleanup) = runtime.block_on(open(backend, scratch.path(), url))?;
    let result = measure(&store);
    runtime.block_on(async {
        store.close().await.map_err(|e| e.to_string())?;
        if let Some((admin, name)) = cleanup {
            admin
                .drop_database(&name)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(())
    })?;
    result
}

async fn measure(store: &Store, rows: u64, batch: u64) -> Result<Vec<Case>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let app = dir.path().join("bench");
    std::fs::create_dir_all(app.join("entities")).map_err(|e| e.to_string())?;
    std::fs::write(app.join("app.yaml"), APP).map_err(|e| e.to_string())?;
    std::fs::write(app.join("entities/customer.yaml"), CUSTOMER).map_err(|e| e.to_string())?;
    std::fs::write(
        app.join("entities/order.yaml"),
        format!("label: Order\ntitle: number\n{ORDER_FIELDS}"),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        app.join("entities/order_raw.yaml"),
        format!("label: Raw order\n{ORDER_FIELDS}"),
    )
    .map_err(|e| e.to_string())?;
    let report = trellis_engine::check(&[app]);
    let model = report.model.ok_or_else(|| report.diagnostics.render())?;
    trellis_runtime::deploy_model(store, &model, false)
        .await
        .map_err(|e| e.to_string())?;
    let catalog = Arc::new(Catalog::new(&model));
    let writer = RecordWriter::new(store.clone(), catalog.clone());
    let reader = RecordReader::new(store.clone(), catalog.clone());
    let entity = |n: &str| catalog.entity("bench", n).ok_or(format!("no entity {n}"));
    let (customer, orders) = (entity("customer")?, entity("order")?);
    let err = |e: trellis_runtime::RecordError| e.to_string();

    let names: Vec<Map<String, Json>> = (0..100)
        .map(|i| {
            json!({"name": format!("Customer {i}")})
                .as_object()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let customers = writer
        .insert_many(&customer, names, &Actor::system(), &Access::everything())
        .await
        .map_err(err)?;
    let actor = Actor::user(1);

    // insert: the full pipeline in batches, against hand-written inserts of the same rows.
    let started = Instant::now();
    let mut i = 0;
    while i < rows {
        let records: Vec<Map<String, Json>> = (i..(i + batch).min(rows))
            .map(|n| {
                let (mut values, lines) = order(n, &customers);
                values.insert("lines".into(), lines.iter().map(|(item, qty, price)| json!({"item": item, "qty": qty, "price": format!("{}.{:02}", price / 100, price % 100)})).collect());
                values
            })
            .collect();
        writer
            .insert_many(&orders, records, &actor, &Access::everything())
            .await
            .map_err(err)?;
        i += batch;
    }
    let trellis_insert = started.elapsed();
    let raw_insert = raw_inserts(store, rows, batch, &customers)
        .await
        .map_err(|e| e.to_string())?;

    let dialect = store.dialect();
    let conn = store.connection();
    let all = Access::everything();
    let lookups = 2_000.min(rows);
    let mut r = Lcg(7);
    let ids: Vec<i64> = (0..lookups).map(|_| r.next(rows) as i64 + 1).collect();

    let started = Instant::now();
    for id in &ids {
        std::hint::black_box(reader.get(&orders, *id, &all).await.map_err(err)?);
    }
    let trellis_get = started.elapsed();
    let started = Instant::now();
    for id in &ids {
        std::hint::black_box(
            raw_get(conn, dialect, *id)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let raw_get_time = started.elapsed();

    let pages = 200;
    let filter = |i: usize| {
        Filter(
            json!({"status": STATUSES[i % 3], "region": REGIONS[i % 4]})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        )
    };
    let started = Instant::now();
    for p in 0..pages {
        let q = ListQuery {
            filter: Some(filter(p)),
            sort: vec!["-ordered_on".into()],
            limit: Some(50),
            ..Default::default()
        };
        std::hint::black_box(reader.list(&orders, &q, &all).await.map_err(err)?);
    }
    let trellis_list = started.elapsed();
    let started = Instant::now();
    for p in 0..pages {
        std::hint::black_box(
            raw_list(conn, dialect, STATUSES[p % 3], REGIONS[p % 4])
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let raw_list_time = started.elapsed();

    let rounds = 5;
    let started = Instant::now();
    for _ in 0..rounds {
        let groups = reader
            .aggregate(
                &orders,
                &[Measure::Count, Measure::Sum("amount".into())],
                &[Grouping::parse("status").map_err(err)?],
                None,
                &all,
            )
            .await
            .map_err(err)?;
        std::hint::black_box(groups);
    }
    let trellis_agg = started.elapsed();
    let started = Instant::now();
    for _ in 0..rounds {
        let sql = "SELECT status, COUNT(*), SUM(amount) FROM bench__order GROUP BY status ORDER BY status";
        std::hint::black_box(
            conn.query_all_raw(Statement::from_string(dialect.backend(), sql))
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let raw_agg = started.elapsed();

    Ok(vec![
        Case::new("insert", rows, trellis_insert, raw_insert),
        Case::new("get_by_id", lookups, trellis_get, raw_get_time),
        Case::new("list_page", pages as u64, trellis_list, raw_list_time),
        Case::new("aggregate", rounds, trellis_agg, raw_agg),
    ])
}

/// `?` placeholders, numbered for PostgreSQL.
fn sql(dialect: Dialect, text: &str) -> String {
    dialect.numbered(text)
}

fn money(dialect: Dialect, cents: i64) -> Value {
    match dialect {
        Dialect::Sqlite => cents.into(),
        Dialect::Postgres => rust_decimal::Decimal::new(cents, 2).into(),
    }
}

fn date(dialect: Dialect, text: &str) -> Value {
    match dialect {
        Dialect::Sqlite => text.into(),
        Dialect::Postgres => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .unwrap_or_default()
            .into(),
    }
}

/// The same orders as hand-written multi-row inserts into the raw twin table, in
/// the same batches and statement sizes as the pipeline uses.
async fn raw_inserts(
    store: &Store,
    rows: u64,
    batch: u64,
    customers: &[i64],
) -> Result<Duration, sea_orm::DbErr> {
    const CHUNK: u64 = 500;
    let dialect = store.dialect();
    let backend = dialect.backend();
    let now: Value = match dialect {
        Dialect::Sqlite => chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string()
            .into(),
        Dialect::Postgres => chrono::Utc::now().into(),
    };
    let head = "INSERT INTO bench__order_raw (version, created_at, created_by, updated_at, updated_by, number, customer, status, region, priority, ordered_on, due, qty, amount, discount, paid, note) VALUES ";
    let started = Instant::now();
    let mut i = 0;
    while i < rows {
        let txn = store.connection().begin().await?;
        let mut n = i;
        while n < (i + batch).min(rows) {
            let end = (n + CHUNK).min((i + batch).min(rows));
            let mut values = Vec::new();
            let mut lines = Vec::new();
            for k in n..end {
                let (v, l) = order(k, customers);
                let text = |key: &str| Value::from(v[key].as_str().unwrap_or_default().to_owned());
                let cents = v["amount"]
                    .as_str()
                    .unwrap_or_default()
                    .replace('.', "")
                    .parse::<i64>()
                    .unwrap_or_default();
                values.extend([
                    now.clone(),
                    now.clone(),
                    text("number"),
                    v["customer"].as_i64().into(),
                    text("status"),
                    text("region"),
                    text("priority"),
                    date(dialect, v["ordered_on"].as_str().unwrap_or_default()),
                    date(dialect, v["due"].as_str().unwrap_or_default()),
                    v["qty"].as_i64().into(),
                    money(dialect, cents),
                    money(dialect, 500),
                    v["paid"].as_bool().into(),
                    text("note"),
                ]);
                lines.push(l);
            }
            let tuple = "(1, ?, 1, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
            let insert = sql(
                dialect,
                &format!("{head}{} RETURNING id", vec![tuple; lines.len()].join(", ")),
            );
            let ids: Vec<i64> = txn
                .query_all_raw(Statement::from_sql_and_values(backend, insert, values))
                .await?
                .iter()
                .map(|r| r.try_get_by_index(0))
                .collect::<Result<_, _>>()?;
            let mut line_values = Vec::new();
            for (id, l) in ids.iter().zip(&lines) {
                for (position, (item, qty, price)) in l.iter().enumerate() {
                    line_values.extend([
                        (*id).into(),
                        (position as i64 + 1).into(),
                        item.clone().into(),
                        (*qty).into(),
                        money(dialect, *price),
                    ]);
                }
            }
            let count = line_values.len() / 5;
            let insert = sql(
                dialect,
                &format!(
                    "INSERT INTO bench__order_raw__lines (parent_id, position, item, qty, price) VALUES {}",
                    vec!["(?, ?, ?, ?, ?)"; count].join(", ")
                ),
            );
            txn.execute_raw(Statement::from_sql_and_values(backend, insert, line_values))
                .await?;
            n = end;
        }
        txn.commit().await?;
        i += batch;
    }
    Ok(started.elapsed())
}

/// An order, its customer's name and its lines, by hand.
async fn raw_get(
    conn: &DatabaseConnection,
    dialect: Dialect,
    id: i64,
) -> Result<(usize, usize), sea_orm::DbErr> {
    let backend = dialect.backend();
    let head = sql(
        dialect,
        "SELECT o.*, c.name AS customer_name FROM bench__order o LEFT JOIN bench__customer c ON c.id = o.customer WHERE o.id = ?",
    );
    let lines = sql(
        dialect,
        "SELECT id, item, qty, price FROM bench__order__lines WHERE parent_id = ? ORDER BY position",
    );
    let a = conn
        .query_all_raw(Statement::from_sql_and_values(backend, head, [id.into()]))
        .await?;
    let b = conn
        .query_all_raw(Statement::from_sql_and_values(backend, lines, [id.into()]))
        .await?;
    Ok((a.len(), b.len()))
}

/// A page of 50 with its capped total, by hand.
async fn raw_list(
    conn: &DatabaseConnection,
    dialect: Dialect,
    status: &str,
    region: &str,
) -> Result<(i64, usize), sea_orm::DbErr> {
    let backend = dialect.backend();
    let count = sql(
        dialect,
        "SELECT COUNT(*) FROM (SELECT 1 FROM bench__order WHERE status = ? AND region = ? LIMIT 10001) t",
    );
    let page = sql(
        dialect,
        "SELECT o.*, c.name AS customer_name FROM bench__order o LEFT JOIN bench__customer c ON c.id = o.customer WHERE o.status = ? AND o.region = ? ORDER BY o.ordered_on DESC NULLS LAST, o.id LIMIT 51",
    );
    let n = conn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            count,
            [status.into(), region.into()],
        ))
        .await?
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or_default();
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            page,
            [status.into(), region.into()],
        ))
        .await?;
    Ok((n, rows.len()))
}
