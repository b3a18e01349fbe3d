//! What the server tells about itself: every API request is counted in the
//! metrics served at `/metrics` (Prometheus text); changes, exports and
//! failures also go to the operation log.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::oplog::Operation;

/// Set by the authentication of a request, read by the operation log.
#[derive(Clone, Default)]
pub struct UserSlot(pub Arc<OnceLock<i64>>);

/// Latency bucket bounds, in seconds.
const BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Request counts by route, method and status; latencies by route and method.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<(String, String), Histogram>>,
}

impl Metrics {
    fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests
                .entry((route.to_owned(), method.to_owned(), status))
                .or_default() += 1;
        }
        if let Ok(mut latency) = self.latency.lock() {
            let h = latency
                .entry((route.to_owned(), method.to_owned()))
                .or_default();
            for (count, bound) in h.counts.iter_mut().zip(BUCKETS) {
                if seconds <= bound {
                    *count += 1;
                }
            }
            h.count += 1;
            h.sum += seconds;
        }
    }

    /// The Prometheus text exposition of everything observed, plus the pool.
    pub fn render(&self, pool_size: u32, pool_idle: usize) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP trellis_http_requests_total HTTP requests by route, method and status.\n",
        );
        out.push_str("# TYPE trellis_http_requests_total counter\n");
        if let Ok(requests) = self.requests.lock() {
            for ((route, method, status), n) in requests.iter() {
                let _ = writeln!(
                    out,
                    "trellis_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str("# HELP trellis_http_request_duration_seconds HTTP request latency by route and method.\n");
        out.push_str("# TYPE trellis_http_request_duration_seconds histogram\n");
        if let Ok(latency) = self.latency.lock() {
            for ((route, method), h) in latency.iter() {
                let labels = format!("route=\"{}\",method=\"{method}\"", escape(route));
                for (count, bound) in h.counts.iter().zip(BUCKETS) {
                    let _ = writeln!(
                        out,
                        "trellis_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                    );
                }
                let _ = writeln!(
                    out,
                    "trellis_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "trellis_http_request_duration_seconds_sum{{{labels}}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "trellis_http_request_duration_seconds_count{{{labels}}} {}",
                    h.count
                );
            }
        }
        out.push_str("# HELP trellis_db_connections Database pool connections by state.\n");
        out.push_str("# TYPE trellis_db_connections gauge\n");
        let idle = pool_idle as u64;
        let _ = writeln!(out, "trellis_db_connections{{state=\"idle\"}} {idle}");
        let _ = writeln!(
            out,
            "trellis_db_connections{{state=\"in_use\"}} {}",
            u64::from(pool_size).saturating_sub(idle)
        );
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /metrics`
pub async fn metrics(State(state): State<AppState>) -> Response {
    let (size, idle) = state.store.pool_stats();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(size, idle),
    )
        .into_response()
}

/// The app, entity and record an API path names, if any.
fn target(path: &str) -> (Option<String>, Option<String>, Option<i64>) {
    let mut parts = path.strip_prefix("/api/v1/").unwrap_or_default().split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("auth" | "me" | "admin") | None, _, _) => (None, None, None),
        (Some(app), Some(entity), id) => (
            Some(app.to_owned()),
            Some(entity.to_owned()),
            id.and_then(|i| i.parse().ok()),
        ),
        _ => (None, None, None),
    }
}

/// Which requests the operation log keeps: every change, every export, and
/// every refused or failed request. Successful plain reads are only counted
/// in the metrics: logging them would add a database write to each page view
/// and bury the changes an administrator looks for under millions of reads.
fn logged(method: &str, path: &str, status: u16) -> bool {
    let read = matches!(method, "GET" | "HEAD" | "OPTIONS");
    path.starts_with("/api/") && (!read || status >= 400 || path.ends_with("/export"))
}

/// Times a request, then counts it and logs it.
pub async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let at = chrono::Utc::now();
    let slot = UserSlot::default();
    request.extensions_mut().insert(slot.clone());
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    state.metrics.observe(&route, &method, status, seconds);
    if logged(&method, &path, status) {
        let (app, entity, record_id) = target(&path);
        state.operations.record(Operation {
            at,
            user_id: slot.0.get().copied(),
            method,
            path,
            app,
            entity,
            record_id,
            status,
            duration_ms: seconds * 1000.0,
            ip,
        });
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_exports_and_failures_are_logged_plain_reads_are_not() {
        assert!(logged("POST", "/api/v1/crm/customer", 201));
        assert!(logged("PATCH", "/api/v1/crm/customer/1", 200));
        assert!(logged("DELETE", "/api/v1/crm/customer/1", 204));
        assert!(logged("GET", "/api/v1/crm/customer/export", 200));
        assert!(logged("GET", "/api/v1/crm/customer/1", 404));
        assert!(logged("GET", "/api/v1/admin/users", 403));
        assert!(!logged("GET", "/api/v1/crm/customer/1", 200));
        assert!(!logged("GET", "/api/v1/crm/customer", 200));
        assert!(!logged("POST", "/healthz", 200));
    }

    #[test]
    fn api_paths_name_their_app_entity_and_record() {
        assert_eq!(
            target("/api/v1/crm/customer/42/history"),
            (Some("crm".into()), Some("customer".into()), Some(42))
        );
        assert_eq!(
            target("/api/v1/crm/customer"),
            (Some("crm".into()), Some("customer".into()), None)
        );
        assert_eq!(target("/api/v1/auth/token"), (None, None, None));
        assert_eq!(target("/api/v1/admin/users"), (None, None, None));
    }

    #[test]
    fn metrics_render_counts_and_cumulative_buckets() {
        let m = Metrics::default();
        m.observe("/api/v1/{app}/{entity}", "GET", 200, 0.003);
        m.observe("/api/v1/{app}/{entity}", "GET", 200, 0.2);
        m.observe("/api/v1/{app}/{entity}", "GET", 404, 0.0005);
        let text = m.render(4, 3);
        assert!(text.contains(
            "trellis_http_requests_total{route=\"/api/v1/{app}/{entity}\",method=\"GET\",status=\"200\"} 2"
        ));
        assert!(text.contains("le=\"0.001\"} 1"), "{text}");
        assert!(text.contains("le=\"0.005\"} 2"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 3"), "{text}");
        assert!(text.contains("trellis_db_connections{state=\"in_use\"} 1"));
    }
}
