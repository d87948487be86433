//! The HTTP routes. Every response is JSON; an error is
//! `{"error": "<what went wrong and what would be accepted>"}`.
//!
//! | route | what |
//! |---|---|
//! | `PUT`/`POST /v1/plugins/{name}` | upload a component (body: the `.wasm` bytes); checked at once |
//! | `GET /v1/plugins` | the tenant's components |
//! | `PUT /v1/files/{path}` | upload an input file into the tenant's file area |
//! | `GET /v1/files`, `GET /v1/files/{path}` | list the file area, read a file (`?offset=`) |
//! | `POST /v1/jobs` | submit a job file (body: TOML); `201` with the job's `id` |
//! | `GET /v1/jobs`, `GET /v1/jobs/{id}` | the tenant's jobs, one job's status |
//! | `DELETE /v1/jobs/{id}` | forget an ended job and delete its directory (record, checkpoints, dead letters); `409` while it has not ended |
//! | `GET /v1/jobs/{id}/metrics` | records in and out, batches, dead letters, ... |
//! | `GET /v1/jobs/{id}/dashboard` | the job's live figures, as the dashboard reads them (`docs/metrics.md`) |
//! | `GET /metrics` | Prometheus metrics (OpenMetrics text) of the token's jobs: a tenant's own, the admin token's every tenant's |
//! | `GET /ui` | the dashboard: a tenant signs in with its token and sees its jobs |
//! | `GET /v1/jobs/{id}/logs` | the job's recent log lines (`?lines=`) |
//! | `GET /v1/jobs/{id}/dead-letters` | the end of its dead-letter file (`?lines=`) |
//! | `POST /v1/jobs/{id}/stop` | stop gracefully: the batch is finished, the sinks flushed, and a last checkpoint keeps the open windows (emitted after a resume from it); `?drain=true` emits every open window first, as at the end of the input; the job stays stopped after a restart of the server |
//! | `POST /v1/jobs/{id}/resume` | resume a paused job |
//! | `PUT /v1/jobs/{id}/operators/{operator}` | swap a new version of a `plugin` operator into the running job (body: the `.wasm` bytes); answers once the job adopted or refused it |
//! | `GET`/`POST /v1/admin/tenants`, `DELETE /v1/admin/tenants/{name}` | admin: list (and those still `removing`), add, remove tenants; a removed tenant's jobs are stopped, halted after `removal_grace`, and its data deleted once they have all ended |
//!
//! Tenant routes take the tenant's token as `Authorization: Bearer TOKEN`,
//! admin routes the admin token. A missing or unknown token is `401`; a
//! job of another tenant is `404`, with the same body as a job that does
//! not exist.
//!
//! Tenants added here, uploaded plugins and submitted jobs are kept under
//! the data directory ([`crate::serve::persist`]): after a restart of the
//! server they are all there again, and the jobs that were running (or
//! paused) go on from their checkpoints (or wait for a resume).

mod jobs;
mod observe;
mod store;
mod tenants;

pub use jobs::DEPLOY_WAIT;

use super::Server;
use super::tenant::{Tenant, hash_token, same_hash};
use crate::model::units::format_size;
use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::FromRequestParts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde_json::{Value, json};
use std::sync::Arc;

/// Lines `logs` and `dead-letters` return unless `?lines=` says otherwise.
pub const DEFAULT_TAIL: usize = 100;
/// Most dead-letter lines one request returns.
pub const MAX_TAIL: usize = 1000;
/// Most bytes of a dead-letter file read for its tail.
pub const TAIL_BYTES: u64 = 1 << 20;
/// Entries `GET /v1/files` lists at most.
pub const MAX_LISTED_FILES: usize = 1000;

/// The routes, on `server`.
pub fn router(server: Arc<Server>) -> Router {
    use jobs::*;
    use store::*;
    use tenants::*;
    Router::new()
        .route("/v1/plugins", get(list_plugins))
        .route("/v1/plugins/{name}", put(upload_plugin).post(upload_plugin))
        .route("/v1/files", get(list_files))
        .route("/v1/files/{*path}", put(upload_file).get(read_file))
        .route("/v1/jobs", get(list_jobs).post(submit_job))
        .route("/v1/jobs/{id}", get(job_status).delete(delete_job))
        .route("/v1/jobs/{id}/metrics", get(job_metrics))
        .route("/v1/jobs/{id}/dashboard", get(observe::dashboard))
        .route("/metrics", get(observe::metrics))
        .route("/v1/jobs/{id}/logs", get(job_logs))
        .route("/v1/jobs/{id}/dead-letters", get(job_dead_letters))
        .route("/v1/jobs/{id}/stop", post(stop_job))
        .route("/v1/jobs/{id}/resume", post(resume_job))
        .route(
            "/v1/jobs/{id}/operators/{operator}",
            put(deploy_operator).post(deploy_operator),
        )
        .route("/v1/admin/tenants", get(list_tenants).post(add_tenant))
        .route("/v1/admin/tenants/{name}", delete(remove_tenant))
        .merge(crate::serve::ui::assets())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .with_state(server)
}

/// An error response: a status and `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn no_job() -> Self {
        // The same words whether the job never existed or is another
        // tenant's: the answer must not tell them apart.
        Self::new(StatusCode::NOT_FOUND, "no such job")
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(target: "sluice::serve", "request failed: {e}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("server error: {e}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

type ApiResult<T = Response> = Result<T, ApiError>;

/// The bearer token's hash, or `401`.
fn token_hash(parts: &Parts) -> ApiResult<[u8; 32]> {
    let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing token: send `Authorization: Bearer TOKEN`",
        )
    })?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "malformed Authorization header: expected `Bearer TOKEN`",
            )
        })?;
    Ok(hash_token(token))
}

/// The tenant a request authenticates as.
pub struct Caller(pub Arc<Tenant>);

impl FromRequestParts<Arc<Server>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, server: &Arc<Server>) -> ApiResult<Self> {
        let hash = token_hash(parts)?;
        server
            .tenant_by_token(&hash)
            .map(Caller)
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown token"))
    }
}

/// A request with the admin token.
pub struct Admin;

impl FromRequestParts<Arc<Server>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, server: &Arc<Server>) -> ApiResult<Self> {
        let hash = token_hash(parts)?;
        if let Some(admin) = &server.settings.admin
            && same_hash(admin, &hash)
        {
            return Ok(Admin);
        }
        if server.tenant_by_token(&hash).is_some() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this route needs the admin token, not a tenant's",
            ));
        }
        Err(ApiError::new(StatusCode::UNAUTHORIZED, "unknown token"))
    }
}

/// Reads a request body of at most `limit` bytes; more is `413`, refused
/// from `Content-Length` before anything is read when the client says.
async fn read_body(
    headers: &HeaderMap,
    mut body: Body,
    limit: u64,
    what: &str,
) -> ApiResult<Bytes> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{what} is larger than the {} this server accepts",
                format_size(limit)
            ),
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit
    {
        return Err(too_large());
    }
    let mut out = Vec::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame =
            frame.map_err(|e| ApiError::bad(format!("cannot read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if (out.len() + data.len()) as u64 > limit {
                return Err(too_large());
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.into())
}

/// Runs the file I/O `f` on tokio's blocking pool: a stalled disk then
/// holds up only the requests that wait for it, not the async threads
/// every request and job shares. An I/O error is a `500`.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

/// Writes `bytes` to `path` whole and durably (see
/// [`crate::serve::persist::write_atomically`]), creating its directory.
/// Blocking: run it through [`blocking`].
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::serve::persist::write_atomically(path, bytes, true)
}

fn created(body: Value) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

fn ok(body: impl serde::Serialize) -> Response {
    Json(body).into_response()
}
