//! What the suites that drive the REST API share: a server on loopback, signing
//! in, and a load of concurrent keep-alive clients.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

/// Concurrent connections of a load.
pub const CONNECTIONS: usize = 32;
/// The password of every account the suites create.
pub const PASSWORD: &str = "bench-password";

/// One request of a load: a path and, for writes, a JSON body.
pub enum Request {
    Get(String),
    Post(String, Json),
    Patch(String, Json),
}

/// Serves `app` on a free loopback port, in the background of the current runtime.
pub async fn listen(app: axum::Router) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// A bearer token for `username` (whose password is [`PASSWORD`]).
pub fn token(addr: SocketAddr, username: &str) -> Result<String, String> {
    let body = json!({"username": username, "password": PASSWORD}).to_string();
    let text = agent()
        .post(format!("http://{addr}/api/v1/auth/token"))
        .header("Content-Type", "application/json")
        .send(&body)
        .map_err(|e| e.to_string())?
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    let parsed: Json = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    parsed["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no token for {username}: {text}"))
}

/// Sends requests `0..total` over [`CONNECTIONS`] connections and returns the
/// wall time. Connection `c` sends requests `c`, `c + CONNECTIONS`, … in that
/// order, so requests whose numbers are equal modulo [`CONNECTIONS`] never
/// overlap. Every answer must be a success: a benchmark of errors measures nothing.
pub fn load(
    addr: SocketAddr,
    token: &str,
    total: usize,
    request: &(dyn Fn(usize) -> Request + Sync),
) -> Result<Duration, String> {
    let started = Instant::now();
    let failures = std::sync::atomic::AtomicUsize::new(0);
    let first_failure = std::sync::Mutex::new(None::<String>);
    std::thread::scope(|scope| {
        for worker in 0..CONNECTIONS {
            let (failures, first_failure) = (&failures, &first_failure);
            scope.spawn(move || {
                let agent = agent();
                let auth = format!("Bearer {token}");
                for i in (worker..total).step_by(CONNECTIONS) {
                    let (url, response) = match request(i) {
                        Request::Get(path) => {
                            let url = format!("http://{addr}{path}");
                            let response = agent.get(&url).header("Authorization", &auth).call();
                            (url, response)
                        }
                        Request::Post(path, body) => {
                            let url = format!("http://{addr}{path}");
                            let response = agent
                                .post(&url)
                                .header("Authorization", &auth)
                                .header("Content-Type", "application/json")
                                .send(&body.to_string());
                            (url, response)
                        }
                        Request::Patch(path, body) => {
                            let url = format!("http://{addr}{path}");
                            let response = agent
                                .patch(&url)
                                .header("Authorization", &auth)
                                .header("Content-Type", "application/json")
                                .send(&body.to_string());
                            (url, response)
                        }
                    };
                    let failure = match response {
                        Ok(mut r) => {
                            let status = r.status();
                            let body = r.body_mut().read_to_string().unwrap_or_default();
                            (!status.is_success()).then(|| format!("{status} {url}: {body}"))
                        }
                        Err(e) => Some(format!("{url}: {e}")),
                    };
                    if let Some(failure) = failure {
                        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let mut first = first_failure.lock().unwrap_or_else(|p| p.into_inner());
                        first.get_or_insert(failure);
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed();
    match failures.into_inner() {
        0 => Ok(elapsed),
        n => Err(format!(
            "{n} requests failed; the first: {}",
            first_failure
                .into_inner()
                .unwrap_or_default()
                .unwrap_or_default()
        )),
    }
}
