//! The dashboard and the Prometheus route of one job run by `sluice run
//! --ui ADDR`, and the page and its assets for `sluice serve`'s `/ui`.
//!
//! The page (`assets/`) is embedded in the binary: it loads nothing from
//! the network but the two JSON routes it polls, `GET /v1/jobs` and
//! `GET /v1/jobs/{id}/dashboard`, the same on both, so one page serves a
//! single job and a server's tenants.
//!
//! | route | what |
//! |---|---|
//! | `GET /`, `GET /ui` | the dashboard |
//! | `GET /metrics` | the job's metrics, OpenMetrics text (`docs/metrics.md`) |
//! | `GET /v1/jobs` | the job, as `{"jobs": [{"id", "name", "status"}]}` |
//! | `GET /v1/jobs/{id}/dashboard` | the job's figures ([`JobFigures`]) |

use crate::exec::JobStats;
use crate::metrics::{CONTENT_TYPE, JobFigures, Scope, encode};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::sync::{Arc, Mutex};

/// The dashboard's page.
pub const PAGE: &str = include_str!("assets/index.html");
/// Its script.
pub const SCRIPT: &str = include_str!("assets/app.js");
/// Its style sheet.
pub const STYLE: &str = include_str!("assets/style.css");

/// The page's routes, to merge into a router of any state.
pub fn assets<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(|| async { Html(PAGE) }))
        .route(
            "/ui/app.js",
            get(|| async { with_type("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { with_type("text/css; charset=utf-8", STYLE) }),
        )
}

fn with_type(content_type: &'static str, body: impl IntoResponse) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// A Prometheus exposition response.
pub fn exposition(jobs: Vec<Scope>) -> Response {
    with_type(CONTENT_TYPE, encode(jobs))
}

/// The job `sluice run --ui` watches.
#[derive(Clone)]
pub struct Watched {
    /// The job's name.
    pub name: String,
    /// Its live figures.
    pub stats: Arc<JobStats>,
    /// `running` until the run ends, then `finished`, `stopped` or `failed`.
    pub state: Arc<Mutex<String>>,
}

impl Watched {
    /// The job's figures now (`None` before its run has started).
    pub fn figures(&self) -> Option<JobFigures> {
        let state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        self.stats.figures(&self.name, &state)
    }

    /// Notes how the run ended.
    pub fn ended(&self, state: &str) {
        *self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = state.to_string();
    }
}

/// The routes of `sluice run --ui` for `job`: loopback users only, no
/// token (the address is the caller's to choose).
pub fn router(job: Watched) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/metrics", get(metrics))
        .route("/v1/jobs", get(list))
        .route("/v1/jobs/{id}/dashboard", get(dashboard))
        .merge(assets())
        .with_state(job)
}

async fn metrics(State(job): State<Watched>) -> Response {
    let labels = vec![("job", job.name.clone())];
    let scopes = job.figures().map(|figures| Scope { labels, figures });
    exposition(scopes.into_iter().collect())
}

async fn list(State(job): State<Watched>) -> Response {
    let state = job
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Json(json!({ "jobs": [{ "id": job.name, "name": job.name, "status": { "state": state } }] }))
        .into_response()
}

async fn dashboard(State(job): State<Watched>, Path(id): Path<String>) -> Response {
    match job.figures() {
        Some(f) if id == job.name => Json(f).into_response(),
        Some(_) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no such job" })),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "the job has not started yet" })),
        )
            .into_response(),
    }
}

/// Serves `job`'s dashboard and metrics on `listener` until `stop` turns
/// true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    job: Watched,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, router(job))
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}
