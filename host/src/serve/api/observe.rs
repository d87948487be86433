//! Watching jobs: the Prometheus route and the dashboard's figures.

use super::{ApiError, ApiResult, Caller, ok, token_hash};
use crate::metrics::Scope;
use crate::serve::Server;
use crate::serve::job::JobEntry;
use crate::serve::tenant::same_hash;
use axum::extract::{Path, State};
use axum::http::{StatusCode, request::Parts};
use axum::response::Response;
use std::sync::Arc;

/// `GET /metrics`: with the admin token every tenant's running jobs, with
/// a tenant's token its own; each series labelled with `tenant`, `job`
/// (the job file's name) and `job_id`.
pub(super) async fn metrics(
    State(server): State<Arc<Server>>,
    parts: Parts,
) -> ApiResult<Response> {
    let hash = token_hash(&parts)?;
    let admin = server
        .settings
        .admin
        .as_ref()
        .is_some_and(|a| same_hash(a, &hash));
    let jobs = match (admin, server.tenant_by_token(&hash)) {
        (true, _) => server.all_jobs(),
        (false, Some(tenant)) => server.jobs_of(&tenant.name),
        (false, None) => return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unknown token")),
    };
    Ok(crate::serve::ui::exposition(
        jobs.iter().filter_map(|j| scope(j)).collect(),
    ))
}

fn scope(job: &JobEntry) -> Option<Scope> {
    let figures = job.figures()?;
    let labels = vec![
        ("tenant", job.who.tenant.clone()),
        ("job", job.who.display_name.clone()),
        ("job_id", job.who.id.clone()),
    ];
    Some(Scope { labels, figures })
}

/// `GET /v1/jobs/{id}/dashboard`: the job's figures for the dashboard;
/// `503` until its run has started.
pub(super) async fn dashboard(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let job = super::jobs::owned_job(&server, &tenant, &id)?;
    match job.figures() {
        Some(figures) => Ok(ok(figures)),
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the job has no run yet",
        )),
    }
}
