//! `trellis serve`: opens the store, deploys the apps, makes sure an admin
//! account exists, and serves the REST API until told to stop.

mod admin;
mod auth;
mod body;
mod connect;
mod inbox;
mod observe;
mod openapi;
mod outbox;
pub mod problem;
mod records;
mod schedule;
mod workflow;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::routing::{get, post};
use sea_orm::ConnectionTrait;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::account::{AdminAccount, ensure_admin};
use crate::oplog::OperationLog;
use crate::services::Services;
use crate::store::Store;
use problem::Problem;

/// What the server shares between requests: the deployment's [`Services`]
/// (reached through `Deref`, as `state.writer`), and what only HTTP needs.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub metrics: Arc<observe::Metrics>,
    pub operations: OperationLog,
    pub sessions: Arc<crate::session::SessionCache>,
    /// Connector base URLs and credentials for lookups (the process environment).
    pub environment: crate::connect::Environment,
}

/// How long a request may take before it is answered with 408.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl AppState {
    /// The state for serving `model` from `store`; starts the operation log
    /// writer, so it must be called inside the Tokio runtime.
    pub fn new(store: Store, model: &trellis_engine::CheckedModel) -> AppState {
        AppState {
            metrics: Arc::default(),
            sessions: Arc::default(),
            environment: crate::connect::Environment::process(),
            operations: OperationLog::start(store.clone()),
            services: Services::new(store, model),
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.services
    }
}

/// The routes.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/auth/token", post(auth::token))
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/me", get(auth::me))
        .route(
            "/me/tokens",
            get(auth::list_tokens).post(auth::create_token),
        )
        .route("/me/tokens/{id}", axum::routing::delete(auth::revoke_token))
        .route("/me/tasks", get(workflow::tasks))
        .route(
            "/me/delegations",
            get(workflow::delegations).post(workflow::delegate),
        )
        .route(
            "/me/delegations/{id}",
            axum::routing::delete(workflow::undelegate),
        )
        .route("/admin/users", get(admin::users).post(admin::create))
        .route("/admin/users/{id}", axum::routing::patch(admin::update))
        .route("/admin/roles", get(admin::roles))
        .route("/admin/logs/logins", get(admin::login_log))
        .route("/admin/logs/operations", get(admin::operation_log))
        .route("/me/notifications", get(inbox::list))
        .route("/me/notifications/read", post(inbox::read_all))
        .route("/me/notifications/{id}/read", post(inbox::read_one))
        .route("/admin/channels", get(outbox::channels))
        .route(
            "/admin/channels/{name}",
            get(outbox::channel)
                .put(outbox::put_channel)
                .delete(outbox::delete_channel),
        )
        .route("/admin/schedules", get(schedule::items))
        .route("/admin/schedules/{name}/runs", get(schedule::runs))
        .route("/admin/schedules/{name}/run", post(schedule::run_now))
        .route("/admin/outbox", get(outbox::list))
        .route("/admin/outbox/{id}", get(outbox::get))
        .route("/admin/outbox/{id}/retry", post(outbox::retry))
        .route("/{app}/{entity}", get(records::list).post(records::create))
        .route("/{app}/{entity}/aggregate", get(records::aggregate))
        .route("/{app}/{entity}/export", get(records::export))
        .route("/{app}/{entity}/upsert", post(records::upsert))
        .route(
            "/{app}/{entity}/{id}",
            get(records::get)
                .patch(records::update)
                .delete(records::delete),
        )
        .route("/{app}/{entity}/{id}/history", get(records::history))
        .route(
            "/{app}/{entity}/lookup/{connector}/{operation}",
            post(connect::lookup),
        )
        .route("/{app}/{entity}/{id}/actions/{action}", post(workflow::act))
        .route("/{app}/{entity}/{id}/workflow", get(workflow::history))
        .route(
            "/{app}/{entity}/{id}/workflow/{move}",
            post(workflow::r#move),
        );
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/openapi.json", get(openapi::document_json))
        .route("/metrics", get(observe::metrics))
        .nest("/api/v1", api)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .fallback(|| async { Problem::not_found("no such path") })
        .layer(DefaultBodyLimit::max(body::BODY_LIMIT))
        .layer(always(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(always(header::X_FRAME_OPTIONS, "DENY"))
        .layer(always(header::REFERRER_POLICY, "no-referrer"))
        .layer(always(header::CACHE_CONTROL, "no-store"))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(problem::internal(&"a request panicked"))
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// A header every response carries unless its handler set it. Together: no
/// sniffing, no framing, no referrer leaks, no caching of API data.
fn always(name: header::HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

/// 200 when the database answers, 503 otherwise.
async fn healthz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    let backend = state.store.dialect().backend();
    match state
        .store
        .connection()
        .execute_raw(sea_orm::Statement::from_string(backend, "SELECT 1"))
        .await
    {
        Ok(_) => (StatusCode::OK, "ok\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n"),
    }
}

/// Prepares the store for serving `model`: deploys it and creates the admin account.
pub async fn prepare(
    store: &Store,
    model: &trellis_engine::CheckedModel,
    admin_password: Option<&str>,
) -> Result<AdminAccount, String> {
    crate::deploy::deploy_model(store, model, false)
        .await
        .map_err(|e| e.to_string())?;
    ensure_admin(store, admin_password)
        .await
        .map_err(|e| e.to_string())
}

/// Serves until Ctrl-C or SIGTERM; requests in flight finish first.
pub async fn serve(
    state: AppState,
    bind: SocketAddr,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), String> {
    // The handlers are installed before the server says it listens, so a signal
    // sent as soon as it is up stops it cleanly instead of killing it.
    let shutdown = shutdown_signal().map_err(|e| format!("cannot watch for signals: {e}"))?;
    let channels = crate::notify::Channels::from_env()?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    on_listening(local);
    // Outbox messages are delivered while the server runs, by every node.
    let dispatcher = crate::notify::Dispatcher::start(state.store.clone(), channels);
    // So is the scheduler: each due run happens on the one node that claims it.
    let scheduler = state.scheduler.clone().start();
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| e.to_string());
    dispatcher.stop().await;
    scheduler.stop().await;
    served
}

/// A future that completes on Ctrl-C or SIGTERM, with both handlers already installed.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    #[cfg(unix)]
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}
