//! The `api` suite: the REST API over HTTP with 32 concurrent keep-alive
//! connections on loopback, against a bare axum handler running the same SQL
//! in the same process and the same run. Cases: get by id, a list page (as the
//! admin, and as a clerk whose role carries a row filter) and create. Also the
//! cold start of `trellis serve` to a healthy `/healthz`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::routing::get;
use sea_orm::{ConnectionTrait, QueryResult, Statement, Value};
use serde_json::{Map, Value as Json, json};
use trellis_runtime::serve::{AppState, router};
use trellis_runtime::{Access, Actor, Dialect, Store};

use super::http::{PASSWORD, Request, agent, listen, load, token};
use super::{Backend, Case, Report};

const APP: &str = "name: bench\nlabel: Bench\n";
const TICKET: &str = r#"
label: Ticket
title: subject
fields:
  subject: {type: text, required: true}
  status: {type: select, options: [open, pending, closed]}
  priority: {type: select, options: [low, normal, high]}
  owner: {type: user}
  amount: {type: money}
  opened_on: {type: date}
indexes:
  - fields: [status]
  - fields: [owner, status]
"#;
const ROLES: &str = r#"
roles:
  clerk:
    label: Clerk
    permissions:
      ticket:
        allow: [create, read, update]
        rows: {owner: $user.id}
"#;
const COLUMNS: &str = "id, version, created_at, created_by, updated_at, updated_by, subject, status, priority, owner, amount, opened_on";
const OWNERS: u64 = 100;

pub fn run(backend: Backend, rows: u64, database_url: Option<String>) -> Result<Report, String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let mut report = super::store::with_scratch(&runtime, backend, database_url, |store| {
        measure(&runtime, store, rows)
    })?;
    report
        .figures
        .insert("cold_start_ms".into(), json!(cold_start_ms()?));
    Ok(report)
}

fn measure(runtime: &tokio::runtime::Runtime, store: &Store, rows: u64) -> Result<Report, String> {
    let model = super::check_app(&[
        ("app.yaml", APP),
        ("roles.yaml", ROLES),
        ("entities/ticket.yaml", TICKET),
    ])?;

    let (trellis, bare, clerk_id) = runtime.block_on(async {
        trellis_runtime::serve::prepare(store, &model, Some(PASSWORD)).await?;
        let clerk = trellis_runtime::account::create_user(
            store,
            trellis_runtime::account::AccountChange {
                username: Some("clerk".into()),
                password: Some(PASSWORD.into()),
                roles: Some(vec!["clerk".into()]),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        let state = AppState::new(store.clone(), &model);
        seed(&state, rows).await?;
        let trellis = listen(router(state)).await?;
        let bare = listen(bare_router(store.clone())).await?;
        Ok::<_, String>((trellis, bare, clerk))
    })?;

    let admin = token(trellis, "admin")?;
    let clerk = token(trellis, "clerk")?;
    let ids = |i: usize| (i as u64 * 7919 % rows + 1) as i64;
    let get = |i: usize| Request::Get(format!("/api/v1/bench/ticket/{}", ids(i)));
    let list = |_: usize| {
        Request::Get("/api/v1/bench/ticket?filter=%7B%22status%22%3A%22open%22%7D&limit=50".into())
    };
    let bare_get = |i: usize| Request::Get(format!("/tickets/{}", ids(i)));
    let bare_list = |_: usize| Request::Get("/tickets?status=open".into());
    let bare_clerk_list =
        move |_: usize| Request::Get(format!("/tickets?status=open&owner={clerk_id}"));
    let create = |path: &'static str| {
        move |i: usize| Request::Post(path.into(), Json::Object(ticket_values(i as u64)))
    };

    let reads = 6_400;
    let lists = 1_600;
    let creates = 3_200;
    let get_case = Case::new(
        "get_by_id",
        reads as u64,
        load(trellis, &admin, reads, &get)?,
        load(bare, "", reads, &bare_get)?,
    );
    let admin_list = load(trellis, &admin, lists, &list)?;
    let list_case = Case::new(
        "list_page",
        lists as u64,
        admin_list,
        load(bare, "", lists, &bare_list)?,
    );
    let clerk_list = load(trellis, &clerk, lists, &list)?;
    let rows_case = Case::new(
        "list_page_rows",
        lists as u64,
        clerk_list,
        load(bare, "", lists, &bare_clerk_list)?,
    );
    let create_case = Case::new(
        "create",
        creates as u64,
        load(trellis, &admin, creates, &create("/api/v1/bench/ticket"))?,
        load(bare, "", creates, &create("/tickets"))?,
    );
    let mut figures = Map::new();
    figures.insert(
        "row_filter_vs_admin".into(),
        json!(admin_list.as_secs_f64() / clerk_list.as_secs_f64()),
    );
    Ok(Report {
        cases: vec![get_case, list_case, rows_case, create_case],
        figures,
    })
}

/// `rows` tickets, owned round-robin by user ids 1..=100 (the clerk is user 2).
async fn seed(state: &AppState, rows: u64) -> Result<(), String> {
    let ticket = state.catalog.entity("bench", "ticket").ok_or("no ticket")?;
    let mut i = 0;
    while i < rows {
        let batch: Vec<Map<String, Json>> =
            (i..(i + 10_000).min(rows)).map(ticket_values).collect();
        state
            .writer
            .insert_many(&ticket, batch, &Actor::system(), &Access::everything())
            .await
            .map_err(|e| e.to_string())?;
        i += 10_000;
    }
    // Fresh statistics, as autovacuum would gather them in a running system:
    // without them PostgreSQL plans the filtered lists blind.
    if state.store.dialect() == Dialect::Postgres {
        state
            .store
            .execute_sql("ANALYZE bench__ticket")
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn ticket_values(n: u64) -> Map<String, Json> {
    let statuses = ["open", "pending", "closed"];
    let priorities = ["low", "normal", "high"];
    let values = json!({
        "subject": format!("Ticket {n}"),
        "status": statuses[(n % 3) as usize],
        "priority": priorities[(n / 3 % 3) as usize],
        "owner": n % OWNERS + 1,
        "amount": format!("{}.{:02}", n % 5000, n % 100),
        "opened_on": format!("2026-{:02}-{:02}", n % 12 + 1, n % 28 + 1),
    });
    values.as_object().cloned().unwrap_or_default()
}

/// The baseline: the same statements as Trellis runs, in bare axum handlers,
/// without authentication, permissions, the pipeline or the audit trail.
fn bare_router(store: Store) -> axum::Router {
    axum::Router::new()
        .route("/tickets", get(bare_list_handler).post(bare_create_handler))
        .route("/tickets/{id}", get(bare_get_handler))
        .with_state(Arc::new(store))
}

type Bare = State<Arc<Store>>;

fn ticket_json(row: &QueryResult, dialect: Dialect) -> Result<Json, sea_orm::DbErr> {
    let text = |c: &str| row.try_get::<Option<String>>("", c);
    let int = |c: &str| row.try_get::<Option<i64>>("", c);
    let (amount, opened_on, created_at, updated_at) = match dialect {
        Dialect::Sqlite => (
            int("amount")?.map(|c| format!("{}.{:02}", c / 100, c % 100)),
            text("opened_on")?,
            text("created_at")?,
            text("updated_at")?,
        ),
        Dialect::Postgres => (
            row.try_get::<Option<rust_decimal::Decimal>>("", "amount")?
                .map(|d| d.to_string()),
            row.try_get::<Option<chrono::NaiveDate>>("", "opened_on")?
                .map(|d| d.to_string()),
            row.try_get::<Option<chrono::DateTime<chrono::Utc>>>("", "created_at")?
                .map(|t| t.to_rfc3339()),
            row.try_get::<Option<chrono::DateTime<chrono::Utc>>>("", "updated_at")?
                .map(|t| t.to_rfc3339()),
        ),
    };
    Ok(json!({
        "id": int("id")?, "version": int("version")?,
        "created_at": created_at, "created_by": int("created_by")?,
        "updated_at": updated_at, "updated_by": int("updated_by")?,
        "subject": text("subject")?, "status": text("status")?,
        "priority": text("priority")?, "owner": int("owner")?,
        "amount": amount, "opened_on": opened_on,
    }))
}

fn fail(e: sea_orm::DbErr) -> (axum::http::StatusCode, String) {
    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn bare_get_handler(
    State(store): Bare,
    Path(id): Path<i64>,
) -> Result<axum::Json<Json>, (axum::http::StatusCode, String)> {
    let dialect = store.dialect();
    let sql = dialect.numbered(&format!("SELECT {COLUMNS} FROM bench__ticket WHERE id = ?"));
    let row = store
        .connection()
        .query_one_raw(Statement::from_sql_and_values(
            dialect.backend(),
            sql,
            [id.into()],
        ))
        .await
        .map_err(fail)?
        .ok_or((axum::http::StatusCode::NOT_FOUND, String::new()))?;
    Ok(axum::Json(ticket_json(&row, dialect).map_err(fail)?))
}

async fn bare_list_handler(
    State(store): Bare,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> Result<axum::Json<Json>, (axum::http::StatusCode, String)> {
    let dialect = store.dialect();
    let backend = dialect.backend();
    let mut filter = "status = ?".to_owned();
    let mut values: Vec<Value> = vec![params.get("status").cloned().unwrap_or_default().into()];
    if let Some(owner) = params.get("owner").and_then(|o| o.parse::<i64>().ok()) {
        filter.push_str(" AND owner = ?");
        values.push(owner.into());
    }
    let count = dialect.numbered(&format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM bench__ticket WHERE {filter} LIMIT 10001) t"
    ));
    let page = dialect.numbered(&format!(
        "SELECT {COLUMNS} FROM bench__ticket WHERE {filter} ORDER BY id LIMIT 51"
    ));
    let conn = store.connection();
    let total: i64 = conn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            count,
            values.clone(),
        ))
        .await
        .map_err(fail)?
        .map(|r| r.try_get_by_index(0))
        .transpose()
        .map_err(fail)?
        .unwrap_or(0);
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(backend, page, values))
        .await
        .map_err(fail)?;
    let data = rows
        .iter()
        .take(50)
        .map(|r| ticket_json(r, dialect))
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    Ok(axum::Json(json!({"data": data, "total": total})))
}

async fn bare_create_handler(
    State(store): Bare,
    axum::Json(input): axum::Json<Map<String, Json>>,
) -> Result<(axum::http::StatusCode, axum::Json<Json>), (axum::http::StatusCode, String)> {
    let dialect = store.dialect();
    let now: Value = match dialect {
        Dialect::Sqlite => trellis_runtime::store::now_text().into(),
        Dialect::Postgres => chrono::Utc::now().into(),
    };
    let text = |k: &str| Value::from(input.get(k).and_then(Json::as_str).map(str::to_owned));
    let amount = input.get("amount").and_then(Json::as_str).unwrap_or("0");
    let amount: Value = match dialect {
        Dialect::Sqlite => Value::from(amount.replace('.', "").parse::<i64>().unwrap_or(0)),
        Dialect::Postgres => {
            Value::from(amount.parse::<rust_decimal::Decimal>().unwrap_or_default())
        }
    };
    let opened_on: Value = match dialect {
        Dialect::Sqlite => text("opened_on"),
        Dialect::Postgres => Value::from(
            input
                .get("opened_on")
                .and_then(Json::as_str)
                .and_then(|d| d.parse::<chrono::NaiveDate>().ok()),
        ),
    };
    let sql = dialect.numbered(&format!(
        "INSERT INTO bench__ticket (version, created_at, created_by, updated_at, updated_by, subject, status, priority, owner, amount, opened_on) VALUES (1, ?, 1, ?, 1, ?, ?, ?, ?, ?, ?) RETURNING {COLUMNS}"
    ));
    let values = vec![
        now.clone(),
        now,
        text("subject"),
        text("status"),
        text("priority"),
        Value::from(input.get("owner").and_then(Json::as_i64)),
        amount,
        opened_on,
    ];
    let row = store
        .connection()
        .query_one_raw(Statement::from_sql_and_values(
            dialect.backend(),
            sql,
            values,
        ))
        .await
        .map_err(fail)?
        .ok_or((axum::http::StatusCode::INTERNAL_SERVER_ERROR, String::new()))?;
    Ok((
        axum::http::StatusCode::CREATED,
        axum::Json(ticket_json(&row, dialect).map_err(fail)?),
    ))
}

/// Milliseconds from starting `trellis serve` (examples and bundled apps, an
/// existing data directory) to its first healthy `/healthz`; the median of five.
fn cold_start_ms() -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let data = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut times = Vec::new();
    // The first start deploys the apps and creates the admin; it is not counted.
    for run in 0..6 {
        let started = Instant::now();
        let mut child = std::process::Command::new(&exe)
            .args(["serve", "--examples", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .env("TRELLIS_ADMIN_PASSWORD", PASSWORD)
            .env_remove("DATABASE_URL")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let addr = listening_address(&mut child)?;
        while agent()
            .get(format!("http://{addr}/healthz"))
            .call()
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        if run > 0 {
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn listening_address(child: &mut std::process::Child) -> Result<String, String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if let Some(addr) = line.trim().strip_prefix("listening on http://") {
            return Ok(addr.to_owned());
        }
    }
    Err("trellis serve exited before listening".into())
}
