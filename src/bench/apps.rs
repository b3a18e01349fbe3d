//! The `apps` suite: the bundled apps as they ship. Checking `apps/crm` and
//! `apps/order` together, against reading and parsing their files; and a page
//! of sales orders over N seeded orders, against the same page in hand-written
//! SQL through the same driver.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
use serde_json::{Value as Json, json};
use trellis_engine::model::{FieldType, Filter};
use trellis_runtime::catalog::EntityModel;
use trellis_runtime::record::value::to_sql;
use trellis_runtime::{Access, Catalog, ListQuery, RecordReader, Store};

use super::{Backend, Case, Report};

/// The customers orders spread over.
const CUSTOMERS: u64 = 500;

/// The bundled apps' folders, from a checkout or from where the binary was built.
fn bundled() -> Vec<PathBuf> {
    ["apps/crm", "apps/order"]
        .iter()
        .map(|rel| {
            let here = PathBuf::from(rel);
            if here.join("app.yaml").is_file() {
                here
            } else {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
            }
        })
        .collect()
}

pub fn run(
    backend: Backend,
    rows: u64,
    iterations: u32,
    url: Option<String>,
) -> Result<Report, String> {
    let apps = bundled();
    let report = trellis_engine::check(&apps);
    let model = report.model.ok_or_else(|| {
        format!(
            "the bundled apps do not check clean:\n{}",
            report.diagnostics.render()
        )
    })?;
    let (check, parse) = check_times(&apps, iterations);

    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let (list, raw) = super::store::with_scratch(&runtime, backend, url, |store| {
        runtime.block_on(async {
            trellis_runtime::deploy_model(store, &model, false)
                .await
                .map_err(|e| e.to_string())?;
            let catalog = std::sync::Arc::new(Catalog::new(&model));
            let entity = |app: &str, name: &str| {
                catalog
                    .entity(app, name)
                    .ok_or_else(|| format!("the bundled apps have no {app}.{name}"))
            };
            let customers = entity("crm", "customer")?;
            let orders = entity("order", "sales_order")?;
            for field in ["customer", "due_date", "status"] {
                if !orders.fields.contains_key(field) {
                    return Err(format!("order.sales_order has no `{field}` to list by"));
                }
            }
            let customer_ids = seed(store, &customers, CUSTOMERS, &[]).await?;
            seed(store, &orders, rows, &[("customer", &customer_ids)]).await?;
            list_pages(store, &catalog, &orders).await
        })
    })?;

    let mut figures = serde_json::Map::new();
    figures.insert("check_ms".into(), json!(check.as_secs_f64() * 1e3));
    Ok(Report {
        cases: vec![
            Case::new("check", 1, check, parse),
            Case::new("list_page", PAGES, list, raw),
        ],
        figures,
    })
}

/// The mean time of one check of both apps, and of one read-and-parse of their files.
fn check_times(apps: &[PathBuf], iterations: u32) -> (Duration, Duration) {
    let files: Vec<PathBuf> = apps
        .iter()
        .flat_map(|a| super::check::yaml_files(a))
        .collect();
    let check = super::check::mean(iterations, || {
        std::hint::black_box(trellis_engine::check(apps));
    });
    let parse = super::check::mean(iterations, || {
        for path in &files {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let value: Result<Json, _> = serde_saphyr::from_str(&text);
            std::hint::black_box(value.ok());
        }
    });
    (check, parse)
}

const PAGES: u64 = 200;

/// The page the sales-order menu opens (the `open` view: orders not closed or
/// cancelled, earliest due first), 50 orders with their customers' names:
/// through the reader (which adds every link's title) and by hand.
async fn list_pages(
    store: &Store,
    catalog: &std::sync::Arc<Catalog>,
    orders: &EntityModel,
) -> Result<(Duration, Duration), String> {
    let reader = RecordReader::new(store.clone(), catalog.clone());
    let all = Access::everything();
    let query = ListQuery {
        filter: Some(Filter(
            json!({"status": {"not_in": ["closed", "cancelled"]}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        )),
        sort: vec!["due_date".into()],
        limit: Some(50),
        ..Default::default()
    };
    let started = Instant::now();
    for _ in 0..PAGES {
        std::hint::black_box(
            reader
                .list(orders, &query, &all)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let trellis = started.elapsed();

    let dialect = store.dialect();
    let conn = store.connection();
    let count = dialect.numbered(
        "SELECT COUNT(*) FROM (SELECT 1 FROM order__sales_order WHERE status NOT IN (?, ?) LIMIT 10001) t",
    );
    let page = dialect.numbered(&format!(
        "SELECT o.*, c.name AS customer_title{} FROM order__sales_order o \
         LEFT JOIN crm__customer c ON c.id = o.customer{} \
         WHERE o.status NOT IN (?, ?) ORDER BY o.due_date NULLS FIRST, o.id LIMIT 51",
        title_columns(orders),
        title_joins(orders),
    ));
    let started = Instant::now();
    for _ in 0..PAGES {
        for text in [&count, &page] {
            let statement = Statement::from_sql_and_values(
                dialect.backend(),
                text.clone(),
                ["closed".into(), "cancelled".into()],
            );
            std::hint::black_box(
                conn.query_all_raw(statement)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
    }
    Ok((trellis, started.elapsed()))
}

/// The other titled links of a sales order, joined by hand as a person writing
/// the page's SQL would: its contact, contract and quote.
const OTHER_LINKS: [(&str, &str, &str); 3] = [
    ("contact", "crm__contact", "name"),
    ("contract", "order__sales_contract", "number"),
    ("quote", "order__quote", "number"),
];

fn title_columns(orders: &EntityModel) -> String {
    OTHER_LINKS
        .iter()
        .filter(|(field, ..)| orders.fields.contains_key(*field))
        .map(|(field, _, title)| format!(", {field}_t.{title} AS {field}_title"))
        .collect()
}

fn title_joins(orders: &EntityModel) -> String {
    OTHER_LINKS
        .iter()
        .filter(|(field, ..)| orders.fields.contains_key(*field))
        .map(|(field, table, _)| {
            format!(" LEFT JOIN {table} {field}_t ON {field}_t.id = o.{field}")
        })
        .collect()
}

/// Seeds `n` records of `entity` straight into its table (a read benchmark needs
/// rows, not the write pipeline): every stored field gets a value of its type,
/// spread like real data; `links` name the ids a link field draws from. Returns
/// the new ids.
async fn seed(
    store: &Store,
    entity: &EntityModel,
    n: u64,
    links: &[(&str, &[i64])],
) -> Result<Vec<i64>, String> {
    const CHUNK: u64 = 200;
    let dialect = store.dialect();
    let now = dialect.time(chrono::Utc::now());
    let columns: Vec<(&String, &trellis_runtime::catalog::FieldModel)> = entity
        .fields
        .iter()
        .filter(|(_, f)| f.def.kind != FieldType::Table)
        .collect();
    let names: Vec<&str> = ["version", "created_at", "updated_at"]
        .into_iter()
        .chain(columns.iter().map(|(name, _)| name.as_str()))
        .collect();
    let tuple = format!("({})", vec!["?"; names.len()].join(", "));
    let mut ids = Vec::with_capacity(n as usize);
    let txn = store
        .connection()
        .begin()
        .await
        .map_err(|e| e.to_string())?;
    let mut i = 0;
    while i < n {
        let end = (i + CHUNK).min(n);
        let mut values = Vec::new();
        for k in i..end {
            values.extend([1_i64.into(), now.clone(), now.clone()]);
            for (name, field) in &columns {
                let drawn = links
                    .iter()
                    .find(|(link, _)| link == name)
                    .map(|(_, ids)| json!(ids[(spread(k, name) % ids.len() as u64) as usize]));
                let value = drawn.unwrap_or_else(|| sample(k, name, &field.def));
                values.push(to_sql(&value, field.column, dialect));
            }
        }
        let insert = dialect.numbered(&format!(
            "INSERT INTO {} ({}) VALUES {} RETURNING id",
            entity.table,
            names.join(", "),
            vec![tuple.as_str(); (end - i) as usize].join(", ")
        ));
        for row in txn
            .query_all_raw(Statement::from_sql_and_values(
                dialect.backend(),
                insert,
                values,
            ))
            .await
            .map_err(|e| e.to_string())?
        {
            ids.push(row.try_get_by_index(0).map_err(|e| e.to_string())?);
        }
        i = end;
    }
    txn.commit().await.map_err(|e| e.to_string())?;
    Ok(ids)
}

/// A deterministic spread per record and field, so runs are comparable.
fn spread(k: u64, field: &str) -> u64 {
    let salt = field
        .bytes()
        .fold(0_u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    (k ^ salt)
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407)
        >> 33
}

/// A value of the field's type for the k-th record; `null` for links, users
/// and multi-valued fields, which a list page shows but does not filter on here.
fn sample(k: u64, name: &str, def: &trellis_engine::model::Field) -> Json {
    let r = spread(k, name);
    let day = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap_or_default()
        + chrono::Duration::days((r % 730) as i64);
    match def.kind {
        _ if def.multiple => Json::Null,
        FieldType::Text | FieldType::Email | FieldType::Phone | FieldType::Url => {
            json!(format!("{name}-{k:07}"))
        }
        FieldType::LongText => json!("seeded"),
        FieldType::Integer => json!(r % 1_000),
        FieldType::Decimal | FieldType::Money | FieldType::Percent => {
            json!(format!("{}.{:02}", r % 100_000, r % 100))
        }
        FieldType::Boolean => json!(r.is_multiple_of(2)),
        FieldType::Date => json!(day.to_string()),
        FieldType::Datetime => json!(format!("{day}T09:00:00Z")),
        FieldType::Select => def
            .options
            .as_ref()
            .and_then(|o| o.get((r % o.len().max(1) as u64) as usize))
            .map_or(Json::Null, |o| json!(o.value())),
        _ => Json::Null,
    }
}
