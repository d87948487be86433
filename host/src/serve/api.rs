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
//! | `GET /v1/jobs/{id}/metrics` | records in and out, batches, dead letters, ... |
//! | `GET /v1/jobs/{id}/logs` | the job's recent log lines (`?lines=`) |
//! | `GET /v1/jobs/{id}/dead-letters` | the end of its dead-letter file (`?lines=`) |
//! | `POST /v1/jobs/{id}/stop`, `POST /v1/jobs/{id}/resume` | stop gracefully; resume a paused job |
//! | `PUT /v1/jobs/{id}/operators/{operator}` | swap a new version of a `plugin` operator into the running job (body: the `.wasm` bytes); answers once the job adopted or refused it |
//! | `GET`/`POST /v1/admin/tenants`, `DELETE /v1/admin/tenants/{name}` | admin: list, add, remove tenants |
//!
//! Tenant routes take the tenant's token as `Authorization: Bearer TOKEN`,
//! admin routes the admin token. A missing or unknown token is `401`; a
//! job of another tenant is `404`, with the same body as a job that does
//! not exist.

use super::job::{JobEntry, Recipe, supervise};
use super::spec::{self, Places};
use super::tenant::{Tenant, TenantConfig, check_name, hash_token, same_hash};
use super::{Server, lock, write_lock};
use crate::exec::Job;
use crate::model::units::{format_duration, format_size};
use axum::Json;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Router, extract::rejection::QueryRejection};
use serde::Deserialize;
use serde_json::{Value, json};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
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
    Router::new()
        .route("/v1/plugins", get(list_plugins))
        .route("/v1/plugins/{name}", put(upload_plugin).post(upload_plugin))
        .route("/v1/files", get(list_files))
        .route("/v1/files/{*path}", put(upload_file).get(read_file))
        .route("/v1/jobs", get(list_jobs).post(submit_job))
        .route("/v1/jobs/{id}", get(job_status))
        .route("/v1/jobs/{id}/metrics", get(job_metrics))
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

/// Writes `bytes` to `path` under a temporary name, then renames it, so
/// readers never see half a file.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A name of its own per upload: two uploads to one path do not share
    // a temporary file.
    static UPLOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = UPLOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}-{n}.upload", std::process::id()));
    let tmp = path.with_file_name(name);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn created(body: Value) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

fn ok(body: impl serde::Serialize) -> Response {
    Json(body).into_response()
}

async fn upload_plugin(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    check_name(&name).map_err(ApiError::bad)?;
    if name.ends_with(".wasm") {
        return Err(ApiError::bad(format!(
            "{name:?}: name the plugin without `.wasm`; jobs refer to it as plugin = \"{}\"",
            name.trim_end_matches(".wasm")
        )));
    }
    let bytes = read_body(&headers, body, server.settings.max_plugin_size, "a plugin").await?;
    let runtime = server.runtime.clone();
    let label = std::path::PathBuf::from(&name);
    let checked = {
        let bytes = bytes.clone();
        tokio::task::spawn_blocking(move || runtime.load_bytes(&bytes, &label))
            .await
            .map_err(ApiError::internal)?
    };
    let plugin = checked.map_err(|e| ApiError::bad(e.to_string()))?;
    let path = server
        .tenant_dir(&tenant.name)
        .join("plugins")
        .join(format!("{name}.wasm"));
    write_atomically(&path, &bytes).map_err(ApiError::internal)?;
    let info = plugin.info();
    Ok(created(json!({
        "name": name,
        "world": info.world,
        "contract": info.contract,
        "size": info.size,
        "sha256": info.sha256,
    })))
}

async fn list_plugins(State(server): State<Arc<Server>>, Caller(tenant): Caller) -> ApiResult {
    let dir = server.tenant_dir(&tenant.name).join("plugins");
    let plugins: Vec<Value> = spec::known_plugins(&dir)
        .into_iter()
        .map(|name| {
            let size = std::fs::metadata(dir.join(format!("{name}.wasm")))
                .map(|m| m.len())
                .unwrap_or(0);
            json!({ "name": name, "size": size })
        })
        .collect();
    Ok(ok(json!({ "plugins": plugins })))
}

/// A path in the tenant's file area, or `400`.
fn file_path(server: &Server, tenant: &Tenant, path: &str) -> ApiResult<PathBuf> {
    let root = server.tenant_dir(&tenant.name).join("files");
    let p = spec::confine(std::path::Path::new(path), &root)
        .map_err(|m| ApiError::bad(format!("file path {m}")))?;
    Ok(p)
}

async fn upload_file(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let target = file_path(&server, &tenant, &path)?;
    if target.is_dir() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{path:?} is a directory"),
        ));
    }
    let bytes = read_body(&headers, body, server.settings.max_plugin_size, "a file").await?;
    write_atomically(&target, &bytes).map_err(ApiError::internal)?;
    Ok(created(json!({ "path": path, "size": bytes.len() })))
}

#[derive(Deserialize)]
struct FileQuery {
    offset: Option<u64>,
}

async fn read_file(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
    Path(path): Path<String>,
    query: Result<Query<FileQuery>, QueryRejection>,
) -> ApiResult {
    let Query(query) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    let target = file_path(&server, &tenant, &path)?;
    let limit = server.settings.max_plugin_size;
    let offset = query.offset.unwrap_or(0);
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<u8>, u64)> {
        let mut f = std::fs::File::open(&target)?;
        let size = f.metadata()?.len();
        f.seek(SeekFrom::Start(offset.min(size)))?;
        let mut buf = Vec::new();
        f.take(limit).read_to_end(&mut buf)?;
        Ok((buf, size))
    })
    .await
    .map_err(ApiError::internal)?;
    match read {
        Ok((bytes, size)) => {
            let mut response = bytes.into_response();
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert("x-file-size", HeaderValue::from(size));
            Ok(response)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no file {path:?}"),
        )),
        Err(e) => Err(ApiError::bad(format!("{path:?}: {e}"))),
    }
}

async fn list_files(State(server): State<Arc<Server>>, Caller(tenant): Caller) -> ApiResult {
    let root = server.tenant_dir(&tenant.name).join("files");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let path = entry.path();
            if meta.is_dir() {
                dirs.push(path);
            } else if files.len() < MAX_LISTED_FILES {
                let rel = path.strip_prefix(&root).unwrap_or(&path);
                files.push(json!({ "path": rel.to_string_lossy(), "size": meta.len() }));
            }
        }
    }
    Ok(ok(json!({ "files": files })))
}

async fn submit_job(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let bytes = read_body(&headers, body, server.settings.max_job_size, "a job file").await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| ApiError::bad(format!("the job file is not UTF-8: {e}")))?;
    let id = server.new_job_id();
    let dir = server.tenant_dir(&tenant.name);
    let job_dir = dir.join("jobs").join(&id);
    let places = Places {
        plugins: dir.join("plugins"),
        files: dir.join("files"),
        dead_letter: job_dir.join("dead-letters.jsonl"),
    };
    let mut config = spec::vet(text, &tenant, &places).map_err(|e| ApiError::bad(e.to_string()))?;
    let display_name = config.name.take().unwrap_or_else(|| "job".into());
    let engine_name = format!("{}/{id}", tenant.name);
    config.name = Some(engine_name.clone());

    // Reserve the slot before building, so concurrent submissions cannot
    // pass `max_jobs` together.
    let ring = server.capture.register(&engine_name);
    let entry = JobEntry::new(
        id.clone(),
        tenant.name.clone(),
        display_name,
        engine_name.clone(),
        places.dead_letter.clone(),
        ring,
    );
    {
        let mut jobs = lock(&server.jobs);
        // Removed since the request authenticated: its token is gone.
        if !server.has_tenant(&tenant.name) {
            drop(jobs);
            server.capture.unregister(&engine_name);
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unknown token"));
        }
        let active = jobs
            .values()
            .filter(|j| j.tenant == tenant.name && j.status().is_active())
            .count();
        if active >= tenant.max_jobs {
            drop(jobs);
            server.capture.unregister(&engine_name);
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "tenant `{}` already runs {active} job(s), its max_jobs; stop one first",
                    tenant.name
                ),
            ));
        }
        jobs.insert(id.clone(), entry.clone());
    }
    let forget = |server: &Server| {
        lock(&server.jobs).remove(&id);
        server.capture.unregister(&engine_name);
    };
    if let Err(e) = std::fs::create_dir_all(&job_dir)
        .and_then(|()| std::fs::write(job_dir.join("job.toml"), text))
    {
        forget(&server);
        return Err(ApiError::internal(e));
    }
    let recipe = Recipe {
        config: config.clone(),
        path: places.files.join("job.toml"),
        runtime: server.runtime.clone(),
    };
    let built = {
        let path = recipe.path.clone();
        let runtime = recipe.runtime.clone();
        tokio::task::spawn_blocking(move || Job::from_config(config, &path, &runtime)).await
    };
    let job = match built {
        Ok(Ok(job)) => job,
        Ok(Err(e)) => {
            forget(&server);
            return Err(ApiError::bad(e.to_string()));
        }
        Err(e) => {
            forget(&server);
            return Err(ApiError::internal(e));
        }
    };
    tracing::info!(target: "sluice::serve", job = %engine_name, "started");
    tokio::spawn(supervise(
        entry.clone(),
        job,
        recipe,
        server.settings.breaker.clone(),
    ));
    server.prune(&tenant.name);
    Ok(created(
        serde_json::to_value(entry.view()).map_err(ApiError::internal)?,
    ))
}

async fn list_jobs(State(server): State<Arc<Server>>, Caller(tenant): Caller) -> ApiResult {
    let jobs: Vec<_> = server
        .jobs_of(&tenant.name)
        .iter()
        .map(|j| j.view())
        .collect();
    Ok(ok(json!({ "jobs": jobs })))
}

fn owned_job(server: &Server, tenant: &Tenant, id: &str) -> ApiResult<Arc<JobEntry>> {
    server.job(&tenant.name, id).ok_or_else(ApiError::no_job)
}

async fn job_status(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(ok(owned_job(&server, &tenant, &id)?.view()))
}

async fn job_metrics(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(ok(owned_job(&server, &tenant, &id)?.metrics()))
}

#[derive(Deserialize)]
struct TailQuery {
    lines: Option<usize>,
}

async fn job_logs(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
    query: Result<Query<TailQuery>, QueryRejection>,
) -> ApiResult {
    let job = owned_job(&server, &tenant, &id)?;
    let Query(query) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    let ring = super::log::lock(&job.logs);
    Ok(ok(json!({
        "id": job.id,
        "lines": ring.tail(query.lines.unwrap_or(DEFAULT_TAIL)),
        "dropped": ring.dropped(),
    })))
}

async fn job_dead_letters(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
    query: Result<Query<TailQuery>, QueryRejection>,
) -> ApiResult {
    let job = owned_job(&server, &tenant, &id)?;
    let Query(query) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    let n = query.lines.unwrap_or(DEFAULT_TAIL).min(MAX_TAIL);
    let path = job.dead_letter.clone();
    let records = tokio::task::spawn_blocking(move || tail_lines(&path, n))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let records: Vec<Value> = records
        .into_iter()
        .map(|l| serde_json::from_str(&l).unwrap_or(Value::String(l)))
        .collect();
    Ok(ok(json!({ "id": job.id, "records": records })))
}

/// The last `n` complete lines of a file (none if it does not exist), read
/// from at most its last [`TAIL_BYTES`].
fn tail_lines(path: &std::path::Path, n: usize) -> std::io::Result<Vec<String>> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let size = f.metadata()?.len();
    let start = size.saturating_sub(TAIL_BYTES);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<&str> = text.split('\n').collect();
    // A line cut by the start of the window, or still being written.
    if start > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    if !text.ends_with('\n') {
        lines.pop();
    }
    let lines: Vec<String> = lines
        .into_iter()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let skip = lines.len().saturating_sub(n);
    Ok(lines.into_iter().skip(skip).collect())
}

async fn stop_job(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let job = owned_job(&server, &tenant, &id)?;
    job.request_stop();
    Ok((StatusCode::ACCEPTED, Json(job.view())).into_response())
}

/// How long `deploy_operator` waits for the job to adopt or refuse a version.
pub const DEPLOY_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

async fn deploy_operator(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
    Path((id, operator)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    use crate::wasm::reload::{DeployError, Outcome};
    let job = owned_job(&server, &tenant, &id)?;
    let bytes = read_body(&headers, body, server.settings.max_plugin_size, "a plugin").await?;
    let reloader = job.reloader().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "job {id} is not running ({}): a new version goes into a running job",
                job.metrics().state
            ),
        )
    })?;
    if !reloader.operators().contains(&operator) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            DeployError::UnknownOperator {
                operator,
                known: reloader.operators(),
            }
            .to_string(),
        ));
    }
    let runtime = server.runtime.clone();
    let label = PathBuf::from(format!("{operator}.wasm"));
    let plugin = {
        let bytes = bytes.clone();
        tokio::task::spawn_blocking(move || runtime.load_bytes(&bytes, &label))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::bad(e.to_string()))?
    };
    // `deploy` starts the new version once (guest code): not on the async threads.
    let deployed = {
        let (reloader, operator, plugin) = (reloader.clone(), operator.clone(), plugin.clone());
        tokio::task::spawn_blocking(move || reloader.deploy(&operator, &plugin))
            .await
            .map_err(ApiError::internal)?
    };
    let deployment = match deployed {
        Ok(d) => d,
        Err(e @ DeployError::Busy { .. }) => {
            return Err(ApiError::new(StatusCode::CONFLICT, e.to_string()));
        }
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                e.to_string(),
            ));
        }
    };
    let version = deployment.version;
    // Stored by content: the name comes from the server, never from the
    // request, and a file a restart may need is never replaced.
    let path = server
        .tenant_dir(&tenant.name)
        .join("jobs")
        .join(&id)
        .join("versions")
        .join(format!("{}.wasm", plugin.info().sha256));
    write_atomically(&path, &bytes).map_err(ApiError::internal)?;
    // The verdict is recorded even when this request is gone (a client
    // that disconnects, or a decision after `DEPLOY_WAIT`).
    let (verdict_tx, verdict) = tokio::sync::oneshot::channel();
    {
        let (job, operator) = (job.clone(), operator.clone());
        tokio::spawn(async move {
            let outcome = deployment.outcome().await;
            if matches!(outcome, Outcome::Adopted { .. }) {
                job.adopted(&operator, path);
            }
            let _ = verdict_tx.send(outcome);
        });
    }
    drop(reloader);
    match tokio::time::timeout(DEPLOY_WAIT, verdict).await {
        Ok(Err(_)) => Err(ApiError::internal("the deployment was lost")),
        Ok(Ok(Outcome::Adopted {
            version,
            batch,
            after,
        })) => Ok(ok(json!({
                "operator": operator,
                "version": version,
                "adopted": true,
                "first_batch": batch,
                "after_ms": after.as_secs_f64() * 1e3,
                "sha256": plugin.info().sha256,
        }))),
        Ok(Ok(Outcome::Refused { version, reason })) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("operator `{operator}`: version {version} refused: {reason}"),
        )),
        Err(_) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({
                "operator": operator,
                "version": version,
                "adopted": null,
                "note": format!(
                    "not decided within {}s (the job has had no batch to try it on yet); its metrics will list the verdict",
                    DEPLOY_WAIT.as_secs()
                ),
            })),
        )
            .into_response()),
    }
}

async fn resume_job(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let job = owned_job(&server, &tenant, &id)?;
    let jobs = lock(&server.jobs);
    // The paused job itself counts already.
    let active = jobs
        .values()
        .filter(|j| j.tenant == tenant.name && j.id != id && j.status().is_active())
        .count();
    if active >= tenant.max_jobs {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "tenant `{}` already runs {active} job(s), its max_jobs; stop one first",
                tenant.name
            ),
        ));
    }
    if !job.resume() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "only a paused job can be resumed",
        ));
    }
    drop(jobs);
    Ok(ok(job.view()))
}

fn tenant_view(server: &Server, t: &Tenant) -> Value {
    let active = server
        .jobs_of(&t.name)
        .iter()
        .filter(|j| j.status().is_active())
        .count();
    json!({
        "name": t.name,
        "max_jobs": t.max_jobs,
        "max_workers": t.max_workers,
        "max_partitions": t.max_partitions,
        "limits": {
            "memory": format_size(t.limits.memory),
            "cpu_per_batch": t.limits.cpu_per_batch.map(format_duration),
            "output_ratio": t.limits.output_ratio,
        },
        "active_jobs": active,
    })
}

async fn list_tenants(State(server): State<Arc<Server>>, _: Admin) -> ApiResult {
    let tenants: Vec<Arc<Tenant>> = server
        .tenants
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .values()
        .cloned()
        .collect();
    let list: Vec<Value> = tenants.iter().map(|t| tenant_view(&server, t)).collect();
    Ok(ok(json!({ "tenants": list })))
}

async fn add_tenant(
    State(server): State<Arc<Server>>,
    _: Admin,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let bytes = read_body(&headers, body, server.settings.max_job_size, "a tenant").await?;
    let config: TenantConfig =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad(format!("not a tenant: {e}")))?;
    let tenant = config
        .resolve()
        .map_err(|(field, m)| ApiError::bad(format!("field `{field}`: {m}")))?;
    {
        let tenants = server
            .tenants
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tenants.contains_key(&tenant.name) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("a tenant called {:?} exists", tenant.name),
            ));
        }
        if server.is_removing(&tenant.name) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "a tenant called {:?} was removed and its jobs are still stopping; try again shortly",
                    tenant.name
                ),
            ));
        }
        let admin_clash = server
            .settings
            .admin
            .is_some_and(|a| same_hash(&a, &tenant.token_sha256));
        if admin_clash
            || tenants
                .values()
                .any(|t| same_hash(&t.token_sha256, &tenant.token_sha256))
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "field `token_sha256`: that token is taken; give each tenant its own",
            ));
        }
    }
    let view = tenant_view(&server, &tenant);
    server.add_tenant(tenant).map_err(ApiError::internal)?;
    Ok(created(view))
}

/// How long a removed tenant's jobs get to stop before its data is deleted.
const REMOVAL_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

async fn remove_tenant(
    State(server): State<Arc<Server>>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult {
    let removed = write_lock(&server.tenants).remove(&name);
    if removed.is_some() {
        server.removing(&name);
    }
    if removed.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no tenant {name:?}"),
        ));
    }
    let jobs = server.jobs_of(&name);
    let mut stopped = 0;
    for j in &jobs {
        if !j.status().is_ended() {
            j.request_stop();
            stopped += 1;
        }
    }
    // Once its jobs have ended, nothing of the tenant is left: a tenant
    // added later under the same name starts empty.
    let cleanup = server.clone();
    let tenant = name.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + REMOVAL_GRACE;
        while jobs.iter().any(|j| !j.status().is_ended()) && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        cleanup.forget_tenant(&tenant).await;
    });
    Ok(ok(json!({ "name": name, "stopping_jobs": stopped })))
}
