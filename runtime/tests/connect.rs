//! Connectors on SQLite and PostgreSQL, through the real router against local
//! HTTP servers: a `push` effect of an approval goes to the outbox with the
//! action and reaches the ERP (mapped body, bearer token from the environment)
//! once, after the ERP was down at first; a lookup fills a customer's credit
//! code and address from a mock registry that the environment points the
//! connector at, and a failing registry is a 502, never a 500.
//!
//! Time is stepped with `deliver_due_at`, never slept through.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use chrono::Utc;
use common::{count, each_backend, model};
use serde_json::{Map, Value as Json, json};
use tokio::task::JoinHandle;
use trellis_runtime::Store;
use trellis_runtime::account::{AccountChange, create_user};
use trellis_runtime::connect::Environment;
use trellis_runtime::notify::{Channels, Retry, deliver_due_at};
use trellis_runtime::serve::{AppState, router};
use trellis_runtime::session::open_session;

// ---------------------------------------------------------------------------
// The app: shipments pushed to an ERP on approval, customers filled in from
// an enterprise registry.

const APP: &str = "name: logistics\nlabel: Logistics\n";
const SHIPMENT: &str = r#"
label: Shipment
title: number
fields:
  number: {type: text, required: true}
  weight: {type: decimal, scale: 1}
  container_no: {type: text}
  customs_no: {type: text}
  atd: {type: datetime}
  approved_on: {type: date, read_only: true}
"#;
const WORKFLOW: &str = r#"
entity: shipment
field: status
states:
  draft: {initial: true}
  approved: {final: true}
transitions:
  - action: approve
    from: draft
    to: approved
    roles: [manager]
    input: [customs_no, atd]
    require: [customs_no]
    effects:
      - set: {approved_on: $today}
      - push: {connector: erp, operation: write_back}
"#;
const CUSTOMER: &str = r#"
label: Customer
title: name
fields:
  name: {type: text, required: true}
  credit_code: {type: text, pattern: "^[0-9A-Z]{18}$"}
  address: {type: long_text}
  rating: {type: text}
  founded: {type: integer}
"#;
const ROLES: &str = r#"
roles:
  manager:
    label: Manager
    permissions:
      shipment: {allow: [read, update]}
  clerk:
    label: Clerk
    permissions:
      customer: {allow: [create, read], fields: {rating: hidden}}
  viewer:
    label: Viewer
    permissions:
      customer: {allow: [read]}
"#;
const REGISTRY: &str = r#"
label: Enterprise registry
# Nothing listens here: every environment points the connector at its registry
# with TRELLIS_CONNECTOR_REGISTRY_URL.
base_url: http://127.0.0.1:9
auth: {header: {name: X-Api-Key, value_env: TRELLIS_TEST_REGISTRY_KEY}}
timeout: 5s
operations:
  search:
    entity: customer
    method: GET
    path: /v1/companies
    query: {keyword: =name, size: 1}
    response:
      credit_code: /data/0/credit_code
      address: /data/0/address
      rating: /data/0/rating
      founded: /data/0/founded
"#;

fn erp(port: u16) -> String {
    format!(
        r#"
label: ERP
base_url: http://127.0.0.1:{port}/erp/
auth: {{bearer: {{token_env: TRELLIS_TEST_ERP_TOKEN}}}}
timeout: 5s
operations:
  write_back:
    entity: shipment
    method: PUT
    path: /shipments/{{{{ record.number }}}}/clearance
    query: {{source: trellis}}
    body:
      customs_no: =customs_no
      atd: =atd
      container_no: =container_no
      weight: =weight
      approved_on: =approved_on
      status: =status
      meta: {{by: =user.username, kind: clearance}}
"#
    )
}

fn app(erp_port: u16) -> trellis_engine::CheckedModel {
    model(&[
        ("app.yaml", APP),
        ("roles.yaml", ROLES),
        ("entities/shipment.yaml", SHIPMENT),
        ("entities/customer.yaml", CUSTOMER),
        ("workflows/shipment.yaml", WORKFLOW),
        ("connectors/erp.yaml", &erp(erp_port)),
        ("connectors/registry.yaml", REGISTRY),
    ])
}

// ---------------------------------------------------------------------------
// Local HTTP servers

/// One request a mock server received.
#[derive(Debug, Clone)]
struct Hit {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// A mock of the other systems: the ERP at `/erp/…` (200 when up, 503 when
/// not), the registry at `/v1/companies` (its answer chosen by `mode`).
#[derive(Clone, Default)]
struct Mock {
    up: Arc<Mutex<bool>>,
    mode: Arc<Mutex<&'static str>>,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Mock {
    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().expect("lock").clone()
    }

    fn set_mode(&self, mode: &'static str) {
        *self.mode.lock().expect("lock") = mode;
    }

    fn serve(&self, listener: tokio::net::TcpListener) -> JoinHandle<()> {
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        })
    }
}

async fn answer(
    State(mock): State<Mock>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let path = uri.path().to_owned();
    mock.hits.lock().expect("lock").push(Hit {
        method,
        path: path.clone(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers: headers.clone(),
        body: body.to_vec(),
    });
    if path.starts_with("/erp/") {
        return if *mock.up.lock().expect("lock") {
            (StatusCode::OK, json!({"result": "ok"}).to_string())
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "down".into())
        };
    }
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some("registry-key-1") {
        return (StatusCode::UNAUTHORIZED, "no key".into());
    }
    match *mock.mode.lock().expect("lock") {
        "error" => (StatusCode::INTERNAL_SERVER_ERROR, "boom".into()),
        "html" => (StatusCode::OK, "<html>maintenance</html>".into()),
        "empty" => (StatusCode::OK, json!({"data": []}).to_string()),
        "odd" => (
            StatusCode::OK,
            json!({"data": [{"credit_code": "91310000MA1FL0000X", "founded": "long ago"}]})
                .to_string(),
        ),
        _ => (
            StatusCode::OK,
            json!({"total": 1, "data": [{
                "name": "上海 Acme 有限公司",
                "credit_code": "91310000MA1FL0000X",
                "address": "上海市浦东新区世纪大道 100 号",
                "rating": "AAA",
                "founded": 2001,
            }]})
            .to_string(),
        ),
    }
}

async fn listener() -> (tokio::net::TcpListener, u16) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let port = l.local_addr().expect("an address").port();
    (l, port)
}

/// A port nothing listens on yet (bound once and let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The API of `state` served on a local port.
async fn serve_api(state: AppState) -> (String, JoinHandle<()>) {
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let (l, port) = listener().await;
    let server = tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (format!("http://127.0.0.1:{port}/api/v1"), server)
}

async fn call(base: &str, path: &str, token: &str, body: Option<Json>) -> (u16, Json) {
    let url = format!("{base}{path}");
    let token = token.to_owned();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let auth = format!("Bearer {token}");
        let mut response = match body {
            None => agent.get(&url).header("Authorization", &auth).call(),
            Some(b) => agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(b.to_string()),
        }
        .expect("the server answers");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Json::String(text)),
        )
    })
    .await
    .expect("the call runs")
}

/// Deploys the app, creates an account per role and signs each in.
async fn setup(store: &Store, m: &trellis_engine::CheckedModel) -> Map<String, Json> {
    trellis_runtime::serve::prepare(store, m, Some("admin-pass-1"))
        .await
        .expect("prepares");
    let mut tokens = Map::new();
    for role in ["manager", "clerk", "viewer"] {
        let id = create_user(
            store,
            AccountChange {
                username: Some(format!("{role}_1")),
                password: Some("password-1".into()),
                display_name: Some(format!("The {role}")),
                roles: Some(vec![role.to_owned()]),
                ..AccountChange::default()
            },
        )
        .await
        .expect("an account");
        let token = open_session(store, id).await.expect("a session");
        tokens.insert(role.into(), json!(token));
    }
    let admin: i64 = common::texts(
        store,
        "SELECT CAST(id AS TEXT) FROM trellis_users WHERE username = 'admin'",
    )
    .await[0]
        .clone()
        .and_then(|t| t.parse().ok())
        .expect("the admin");
    let token = open_session(store, admin).await.expect("a session");
    tokens.insert("admin".into(), json!(token));
    tokens
}

fn token<'a>(tokens: &'a Map<String, Json>, who: &str) -> &'a str {
    tokens[who].as_str().expect("a token")
}

// ---------------------------------------------------------------------------
// The tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_pushes_to_the_erp_once_after_it_was_down() {
    each_backend("connect_push", async |store| {
        let erp_port = free_port();
        let m = app(erp_port);
        let tokens = setup(&store, &m).await;
        let (api, server) = serve_api(AppState::new(store.clone(), &m)).await;
        let (admin, manager) = (token(&tokens, "admin"), token(&tokens, "manager"));

        let (status, created) = call(
            &api,
            "/logistics/shipment",
            admin,
            Some(json!({
                "number": "SH 2026/7", "weight": "12.5", "container_no": "MSKU1234565",
            })),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_i64().expect("an id");
        let approve = format!("/logistics/shipment/{id}/actions/approve");

        // A refused action pushes nothing: its transaction never commits.
        let (status, refused) = call(&api, &approve, manager, Some(json!({}))).await;
        assert_eq!(status, 422, "{refused}");
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM trellis_outbox").await,
            0
        );

        let (status, done) = call(
            &api,
            &approve,
            manager,
            Some(json!({
                "values": {"customs_no": "CN-2026-001", "atd": "2026-03-01T08:00:00Z"},
            })),
        )
        .await;
        assert_eq!(status, 200, "{done}");
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM trellis_outbox").await,
            1
        );

        // The push log: the request as rendered, with the names of the
        // variables that hold credentials, never their values.
        let (status, log) = call(
            &api,
            "/admin/outbox?target=logistics.erp.write_back",
            admin,
            None,
        )
        .await;
        assert_eq!((status, &log["total"]), (200, &json!(1)), "{log}");
        let entry = &log["data"][0];
        assert_eq!(
            (&entry["channel"], &entry["topic"], &entry["status"]),
            (
                &json!("connector"),
                &json!("logistics.shipment.approve"),
                &json!("pending")
            )
        );
        let message = entry["id"].as_i64().expect("an id");
        let (_, one) = call(&api, &format!("/admin/outbox/{message}"), admin, None).await;
        let payload = &one["payload"];
        assert_eq!(payload["method"], "PUT");
        assert_eq!(payload["path"], "/shipments/SH%202026%2F7/clearance");
        assert_eq!(payload["record_id"], id);
        assert_eq!(
            payload["auth"],
            json!({"bearer": {"token_env": "TRELLIS_TEST_ERP_TOKEN"}})
        );
        let today = Utc::now().date_naive().to_string();
        let body = json!({
            "customs_no": "CN-2026-001",
            "atd": "2026-03-01T08:00:00.000000Z",
            "container_no": "MSKU1234565",
            "weight": "12.5",
            "approved_on": today,
            "status": "draft",
            "meta": {"by": "manager_1", "kind": "clearance"},
        });
        assert_eq!(
            payload["body"], body,
            "the inputs and earlier effects, as the action has them"
        );

        let settings = Channels {
            retry: Retry {
                base: Duration::from_secs(60),
                cap: Duration::from_secs(240),
                max_attempts: 10,
            },
            timeout: Duration::from_secs(10),
            environment: Environment::process().with("TRELLIS_TEST_ERP_TOKEN", "erp-token-1"),
            ..Channels::default()
        };
        // The ERP is down: nothing listens on its port.
        let t0 = Utc::now();
        assert_eq!(
            deliver_due_at(&store, &settings, t0).await.expect("runs"),
            0
        );
        let (_, first) = call(&api, &format!("/admin/outbox/{message}"), admin, None).await;
        assert_eq!(
            (&first["status"], &first["attempts"]),
            (&json!("pending"), &json!(1))
        );
        assert!(first["last_error"].is_string(), "{first}");
        assert_eq!(
            first["attempt_log"][0]["target"],
            format!("http://127.0.0.1:{erp_port}/erp/shipments/SH%202026%2F7/clearance")
        );

        // It comes up; after the backoff the push arrives, once.
        let mock = Mock::default();
        *mock.up.lock().expect("lock") = true;
        let erp_server = mock.serve(
            tokio::net::TcpListener::bind(("127.0.0.1", erp_port))
                .await
                .expect("the port is free again"),
        );
        assert_eq!(
            deliver_due_at(&store, &settings, t0 + chrono::Duration::seconds(30))
                .await
                .expect("runs"),
            0
        );
        assert!(mock.hits().is_empty(), "not before the backoff has passed");
        assert_eq!(
            deliver_due_at(&store, &settings, t0 + chrono::Duration::seconds(61))
                .await
                .expect("runs"),
            1
        );
        assert_eq!(
            deliver_due_at(&store, &settings, t0 + chrono::Duration::hours(2))
                .await
                .expect("runs"),
            0
        );
        let hits = mock.hits();
        assert_eq!(hits.len(), 1, "delivered once: {hits:?}");
        let hit = &hits[0];
        assert_eq!(hit.method, Method::PUT);
        assert_eq!(hit.path, "/erp/shipments/SH%202026%2F7/clearance");
        assert_eq!(hit.query, "source=trellis");
        let header = |name: &str| {
            hit.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header("authorization"), "Bearer erp-token-1");
        assert_eq!(header("content-type"), "application/json");
        assert_eq!(header("x-trellis-delivery"), message.to_string());
        let received: Json = serde_json::from_slice(&hit.body).expect("a JSON body");
        assert_eq!(received, body);

        let (_, delivered) = call(&api, &format!("/admin/outbox/{message}"), admin, None).await;
        assert_eq!(
            (&delivered["status"], &delivered["attempts"]),
            (&json!("delivered"), &json!(2))
        );
        assert_eq!(delivered["attempt_log"][1]["status_code"], 200);
        assert!(
            !delivered.to_string().contains("erp-token-1"),
            "the token stays out of the log"
        );
        erp_server.abort();
        server.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_fills_a_customer_from_the_registry_the_environment_names() {
    each_backend("connect_lookup", async |store| {
        let m = app(free_port());
        let tokens = setup(&store, &m).await;
        let registry = Mock::default();
        let (l, registry_port) = listener().await;
        let registry_server = registry.serve(l);
        let mocked = |env: Environment| {
            env.with(
                "TRELLIS_CONNECTOR_REGISTRY_URL",
                format!("http://127.0.0.1:{registry_port}"),
            )
            .with("TRELLIS_TEST_REGISTRY_KEY", "registry-key-1")
        };
        let mut state = AppState::new(store.clone(), &m);
        state.environment = mocked(Environment::process());
        let (api, server) = serve_api(state).await;
        let search = "/logistics/customer/lookup/registry/search";
        let (clerk, admin, viewer) = (
            token(&tokens, "clerk"),
            token(&tokens, "admin"),
            token(&tokens, "viewer"),
        );

        let (status, found) =
            call(&api, search, clerk, Some(json!({"name": "上海 Acme & Co"}))).await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(
            found,
            json!({"values": {
                "credit_code": "91310000MA1FL0000X",
                "address": "上海市浦东新区世纪大道 100 号",
                "founded": 2001,
            }}),
            "the hidden `rating` is not the clerk's to fill"
        );
        let hit = &registry.hits()[0];
        assert_eq!(
            (hit.method.as_str(), hit.path.as_str()),
            ("GET", "/v1/companies")
        );
        assert_eq!(
            hit.query,
            "keyword=%E4%B8%8A%E6%B5%B7%20Acme%20%26%20Co&size=1"
        );
        assert!(hit.body.is_empty());
        let (status, all) = call(&api, search, admin, Some(json!({"name": "Acme"}))).await;
        assert_eq!((status, &all["values"]["rating"]), (200, &json!("AAA")));
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM logistics__customer").await,
            0,
            "a lookup saves nothing"
        );

        // Who may ask, and what.
        let (status, _) = call(&api, search, viewer, Some(json!({"name": "Acme"}))).await;
        assert_eq!(status, 403, "reading is not enough");
        for path in [
            "/logistics/customer/lookup/registry/nothing",
            "/logistics/customer/lookup/nothing/search",
            "/logistics/shipment/lookup/registry/search",
            "/logistics/shipment/lookup/erp/write_back",
        ] {
            let (status, problem) = call(&api, path, admin, Some(json!({}))).await;
            assert_eq!(status, 404, "{path}: {problem}");
        }
        let (status, problem) = call(&api, search, clerk, Some(json!({"founded": "soon"}))).await;
        assert_eq!(
            (status, &problem["errors"][0]["field"]),
            (422, &json!("founded")),
            "{problem}"
        );

        // The registry answers nothing useful: no values, not an error.
        registry.set_mode("empty");
        let (status, none) = call(&api, search, clerk, Some(json!({"name": "Nobody"}))).await;
        assert_eq!((status, none), (200, json!({"values": {}})));

        // The registry fails: a 502 saying how, never a 500.
        let hits_before = registry.hits().len();
        for (mode, says) in [
            ("error", "answered HTTP 500"),
            ("html", "not JSON"),
            ("odd", "does not fit `founded`"),
        ] {
            registry.set_mode(mode);
            let (status, problem) = call(&api, search, clerk, Some(json!({"name": "Acme"}))).await;
            assert_eq!(status, 502, "{mode}: {problem}");
            let detail = problem["detail"].as_str().unwrap_or_default();
            assert!(
                detail.contains("`registry.search`") && detail.contains(says),
                "{mode}: {detail}"
            );
        }
        assert_eq!(registry.hits().len(), hits_before + 3);
        registry.set_mode("ok");

        // Down, or not configured on this server.
        let mut down = AppState::new(store.clone(), &m);
        down.environment = mocked(Environment::process()).with(
            "TRELLIS_CONNECTOR_REGISTRY_URL",
            format!("http://127.0.0.1:{}", free_port()),
        );
        let (down_api, down_server) = serve_api(down).await;
        let (status, problem) = call(&down_api, search, clerk, Some(json!({"name": "Acme"}))).await;
        assert_eq!(status, 502, "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("did not answer"),
            "{problem}"
        );
        let mut keyless = AppState::new(store.clone(), &m);
        keyless.environment = Environment::process().with(
            "TRELLIS_CONNECTOR_REGISTRY_URL",
            format!("http://127.0.0.1:{registry_port}"),
        );
        let (keyless_api, keyless_server) = serve_api(keyless).await;
        let (status, problem) =
            call(&keyless_api, search, clerk, Some(json!({"name": "Acme"}))).await;
        assert_eq!(status, 502, "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("TRELLIS_TEST_REGISTRY_KEY"),
            "{problem}"
        );
        for handle in [server, down_server, keyless_server, registry_server] {
            handle.abort();
        }
    })
    .await;
}
