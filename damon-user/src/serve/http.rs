//! The agent's HTTP server: `/metrics` (OpenMetrics text) and `/healthz`.
use std::{
    future::Future,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use super::metrics::{AgentStats, Exporter, to_classic_text};
use crate::core::kdamond::monotonic_ns;

/// The content type of the OpenMetrics text format, which Prometheus asks for.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of Prometheus's classic text format, for other clients.
pub const CLASSIC_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// When the supervisor last finished a membership refresh, and how late it may be before
/// `/healthz` fails: a supervisor stuck in a kdamond call stops refreshing.
#[derive(Debug)]
pub struct Health {
    last_refresh_ns: AtomicU64,
    limit_ns: AtomicU64,
}

impl Health {
    pub fn new(limit_ns: u64) -> Health {
        Health {
            last_refresh_ns: AtomicU64::new(monotonic_ns()),
            limit_ns: AtomicU64::new(limit_ns),
        }
    }

    pub fn refreshed(&self) {
        self.last_refresh_ns
            .store(monotonic_ns(), Ordering::Relaxed);
    }

    pub fn set_limit(&self, limit_ns: u64) {
        self.limit_ns.store(limit_ns, Ordering::Relaxed);
    }

    /// Nanoseconds since the last refresh, when that is over the limit.
    fn late_ns(&self) -> Option<u64> {
        let since = monotonic_ns().saturating_sub(self.last_refresh_ns.load(Ordering::Relaxed));
        (since > self.limit_ns.load(Ordering::Relaxed)).then_some(since)
    }
}

/// What the handlers read.
#[derive(Debug)]
pub struct AppState {
    pub exporter: Arc<Mutex<Exporter>>,
    pub health: Arc<Health>,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// OpenMetrics when the scraper accepts it (Prometheus does), else the classic text format.
async fn metrics(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let agent = AgentStats::now();
    let text = s
        .exporter
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .encode(agent);
    match text {
        Ok(t) if openmetrics => ([(header::CONTENT_TYPE, OPENMETRICS)], t).into_response(),
        Ok(t) => ([(header::CONTENT_TYPE, CLASSIC_TEXT)], to_classic_text(&t)).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed\n",
        )
            .into_response(),
    }
}

async fn healthz(State(s): State<Arc<AppState>>) -> Response {
    match s.health.late_ns() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(ns) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no membership refresh for {:.1} s\n", ns as f64 / 1e9),
        )
            .into_response(),
    }
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
