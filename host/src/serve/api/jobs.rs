//! Jobs: submit, list, status, metrics, logs, dead letters, stop, resume,
//! and new operator versions.

use super::{ApiError, ApiResult, Caller, blocking, created, ok, read_body, write_atomically};
use super::{DEFAULT_TAIL, MAX_TAIL, TAIL_BYTES};
use crate::serve::job::{Identity, JobEntry, supervise};
use crate::serve::persist;
use crate::serve::tenant::Tenant;
use crate::serve::{Server, lock};
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

pub(super) async fn submit_job(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let bytes = read_body(&headers, body, server.settings.max_job_size, "a job file").await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| ApiError::bad(format!("the job file is not UTF-8: {e}")))?
        .to_string();
    let (id, seq) = server.new_job_id();
    let job_dir = server.tenant_dir(&tenant.name).join("jobs").join(&id);
    // Vetting looks the job's plugins up in the tenant's store.
    let vetted = {
        let (server, text, tenant, id) = (server.clone(), text.clone(), tenant.clone(), id.clone());
        tokio::task::spawn_blocking(move || server.recipe(&tenant, &id, &text))
            .await
            .map_err(ApiError::internal)?
    };
    let (recipe, display_name) = vetted.map_err(|e| ApiError::bad(e.to_string()))?;
    let engine_name = format!("{}/{id}", tenant.name);

    // Reserve the slot before building, so concurrent submissions cannot
    // pass `max_jobs` together.
    let ring = server.capture.register(&engine_name);
    let entry = JobEntry::new(
        Identity {
            id: id.clone(),
            seq,
            tenant: tenant.name.clone(),
            display_name,
            engine_name: engine_name.clone(),
            submitted: std::time::SystemTime::now(),
            dir: job_dir.clone(),
        },
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
            .filter(|j| j.who.tenant == tenant.name && j.status().is_active())
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
    // Forgets the job, and its directory if `made`.
    let forget = async |server: &Server, made: bool| {
        lock(&server.jobs).remove(&id);
        server.capture.unregister(&engine_name);
        if made {
            let dir = job_dir.clone();
            let _ = tokio::task::spawn_blocking(move || persist::remove_dir(&dir)).await;
        }
    };
    // The job file first; the record once the job is built. A directory of
    // its own (never `create_dir_all`: a tenant removed meanwhile does not
    // get its directory back).
    let written = {
        let dir = job_dir.clone();
        blocking(move || {
            std::fs::create_dir(&dir)?;
            persist::write_atomically(&dir.join(persist::JOB_FILE), text.as_bytes(), false)
        })
        .await
    };
    if let Err(e) = written {
        forget(&server, true).await;
        return Err(e);
    }
    let job = match recipe.build(&[]).await {
        Ok(job) => job,
        Err(e) => {
            forget(&server, true).await;
            return Err(ApiError::bad(e.to_string()));
        }
    };
    let saved = {
        let entry = entry.clone();
        blocking(move || entry.save()).await
    };
    if let Err(e) = saved {
        forget(&server, true).await;
        return Err(e);
    }
    tracing::info!(target: "sluice::serve", job = %engine_name, "started");
    tokio::spawn(supervise(
        entry.clone(),
        Some(job),
        recipe,
        server.settings.breaker.clone(),
    ));
    server.prune(&tenant.name);
    Ok(created(
        serde_json::to_value(entry.view()).map_err(ApiError::internal)?,
    ))
}

pub(super) async fn delete_job(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    match server.delete_job(&tenant.name, &id).await {
        Err(()) => Err(ApiError::no_job()),
        Ok(false) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job {id} has not ended: stop it first (POST /v1/jobs/{id}/stop)"),
        )),
        Ok(true) => Ok(ok(json!({ "id": id, "deleted": true }))),
    }
}

pub(super) async fn list_jobs(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
) -> ApiResult {
    let jobs: Vec<_> = server
        .jobs_of(&tenant.name)
        .iter()
        .map(|j| j.view())
        .collect();
    Ok(ok(json!({ "jobs": jobs })))
}

pub(super) fn owned_job(server: &Server, tenant: &Tenant, id: &str) -> ApiResult<Arc<JobEntry>> {
    server.job(&tenant.name, id).ok_or_else(ApiError::no_job)
}

pub(super) async fn job_status(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(ok(owned_job(&server, &tenant, &id)?.view()))
}

pub(super) async fn job_metrics(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(ok(owned_job(&server, &tenant, &id)?.metrics()))
}

#[derive(Deserialize)]
pub(super) struct TailQuery {
    lines: Option<usize>,
}

pub(super) async fn job_logs(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
    query: Result<Query<TailQuery>, QueryRejection>,
) -> ApiResult {
    let job = owned_job(&server, &tenant, &id)?;
    let Query(query) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    let ring = crate::serve::log::lock(&job.logs);
    Ok(ok(json!({
        "id": job.who.id,
        "lines": ring.tail(query.lines.unwrap_or(DEFAULT_TAIL)),
        "dropped": ring.dropped(),
    })))
}

pub(super) async fn job_dead_letters(
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
    Ok(ok(json!({ "id": job.who.id, "records": records })))
}

/// The last `n` complete lines of a file (none if it does not exist), read
/// from at most its last [`TAIL_BYTES`].
pub(super) fn tail_lines(path: &std::path::Path, n: usize) -> std::io::Result<Vec<String>> {
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

#[derive(Deserialize)]
pub(super) struct StopQuery {
    /// Emit every open window before stopping.
    #[serde(default)]
    drain: bool,
}

/// Stops a job: with `?drain=true` the running job emits its open windows
/// first; without, a checkpointed job keeps them for after a resume. The
/// job stays stopped after a restart of the server.
pub(super) async fn stop_job(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
    query: Result<Query<StopQuery>, QueryRejection>,
) -> ApiResult {
    let job = owned_job(&server, &tenant, &id)?;
    let Query(query) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    job.stop_by_tenant(query.drain);
    let saved = job.clone();
    blocking(move || saved.save()).await?;
    Ok((StatusCode::ACCEPTED, Json(job.view())).into_response())
}

/// How long `deploy_operator` waits for the job to adopt or refuse a version.
pub const DEPLOY_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

pub(super) async fn deploy_operator(
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
    {
        let path = path.clone();
        blocking(move || write_atomically(&path, &bytes)).await?;
    }
    // The verdict is recorded even when this request is gone (a client
    // that disconnects, or a decision after `DEPLOY_WAIT`).
    let (verdict_tx, verdict) = tokio::sync::oneshot::channel();
    {
        let (job, operator) = (job.clone(), operator.clone());
        tokio::spawn(async move {
            let (outcome, window) = deployment.decided().await;
            if !matches!(outcome, Outcome::Adopted { .. }) {
                let _ = verdict_tx.send(outcome);
                return;
            }
            let replaced = job.adopted(&operator, path);
            // A restart of the server builds the job with it too.
            save_record(&job).await;
            let _ = verdict_tx.send(outcome);
            // Until the window closes the job may go back to the version
            // this one replaced; then a restart runs that one.
            if window.closed().await.is_some() {
                job.rolled_back(&operator, replaced);
                save_record(&job).await;
            }
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

pub(super) async fn resume_job(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let job = owned_job(&server, &tenant, &id)?;
    {
        let jobs = lock(&server.jobs);
        // The paused job itself counts already.
        let active = jobs
            .values()
            .filter(|j| j.who.tenant == tenant.name && j.who.id != id && j.status().is_active())
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
    }
    let saved = job.clone();
    blocking(move || saved.save()).await?;
    Ok(ok(job.view()))
}

/// Writes the job's record (off the async threads), warning when it fails.
async fn save_record(job: &Arc<JobEntry>) {
    let saved = job.clone();
    match tokio::task::spawn_blocking(move || saved.save()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(
            target: "sluice::serve",
            job = %job.who.engine_name,
            "cannot write the job's record: {e}"
        ),
        Err(e) => tracing::warn!(
            target: "sluice::serve",
            job = %job.who.engine_name,
            "writing the job's record ended abnormally: {e}"
        ),
    }
}
