//! The admin's routes: tenants listed, added and removed.

use super::{Admin, ApiError, ApiResult, blocking, created, ok, read_body};
use crate::model::units::{format_duration, format_size};
use crate::serve::persist;
use crate::serve::tenant::{Tenant, TenantConfig, same_hash};
use crate::serve::{Server, read_lock, write_lock};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub(super) fn tenant_view(server: &Server, t: &Tenant) -> Value {
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
            "state": format_size(t.limits.state),
            "join_output": t.limits.join_output,
        },
        "active_jobs": active,
    })
}

pub(super) async fn list_tenants(State(server): State<Arc<Server>>, _: Admin) -> ApiResult {
    let tenants: Vec<Arc<Tenant>> = read_lock(&server.tenants).values().cloned().collect();
    let list: Vec<Value> = tenants.iter().map(|t| tenant_view(&server, t)).collect();
    Ok(ok(
        json!({ "tenants": list, "removing": server.removing_tenants() }),
    ))
}

pub(super) async fn add_tenant(
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
    // One addition or removal at a time: the check, the record and the
    // change go together.
    let _one = server.admin.lock().await;
    if let Some(clash) = clash(&server, &read_lock(&server.tenants), &tenant) {
        return Err(clash);
    }
    let dir = server.tenant_dir(&tenant.name);
    let leftover = {
        let dir = dir.clone();
        blocking(move || Ok(dir.exists())).await?
    };
    if leftover {
        // A former tenant's (one the tenants file no longer lists): a new
        // tenant must not inherit its plugins, files and jobs.
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "the data of a former tenant called {:?} is still in {}; remove it or choose \
                 another name",
                tenant.name,
                dir.display()
            ),
        ));
    }
    // Kept as it came (the token as its SHA-256 only), so that the tenant
    // is there again after a restart.
    let record = serde_json::to_vec_pretty(&config).map_err(ApiError::internal)?;
    {
        let (server, name) = (server.clone(), tenant.name.clone());
        blocking(move || {
            server.make_tenant_dirs(&name)?;
            persist::write_atomically(
                &server.tenant_dir(&name).join(persist::TENANT_RECORD),
                &record,
                false,
            )
        })
        .await?;
    }
    // Taken before the tenants' lock: the view locks the jobs, and a
    // submission locks the jobs, then the tenants.
    let view = tenant_view(&server, &tenant);
    write_lock(&server.tenants).insert(tenant.name.clone(), Arc::new(tenant));
    Ok(created(view))
}

/// Why `tenant` cannot be added beside `tenants`: its name is taken, or
/// still being given up by a removed tenant, or its token is taken.
fn clash(
    server: &Server,
    tenants: &BTreeMap<String, Arc<Tenant>>,
    tenant: &Tenant,
) -> Option<ApiError> {
    if tenants.contains_key(&tenant.name) {
        return Some(ApiError::new(
            StatusCode::CONFLICT,
            format!("a tenant called {:?} exists", tenant.name),
        ));
    }
    if server.is_removing(&tenant.name) {
        return Some(ApiError::new(
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
        return Some(ApiError::new(
            StatusCode::CONFLICT,
            "field `token_sha256`: that token is taken; give each tenant its own",
        ));
    }
    None
}

/// Removes a tenant at once (its token stops working) and ends it in the
/// background: its jobs are asked to stop, those still running after the
/// tenants file's `removal_grace` are halted, and once every one has ended
/// its data is deleted. Until then the name is listed under `removing` and
/// cannot be added again (`409`).
pub(super) async fn remove_tenant(
    State(server): State<Arc<Server>>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult {
    let one = server.admin.lock().await;
    if server.take_tenant(&name).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no tenant {name:?}"),
        ));
    }
    // Marked before its record goes: a server that stops before the data
    // is deleted deletes it when it starts again, and the tenant does not
    // come back.
    let dir = server.tenant_dir(&name);
    let marked = blocking(move || {
        persist::write_atomically(&dir.join(persist::REMOVING), b"", false)?;
        persist::remove_file(&dir.join(persist::TENANT_RECORD))
    })
    .await;
    if let Err(e) = marked {
        tracing::error!(
            target: "sluice::serve",
            "tenant `{name}`'s removal is not recorded ({}): a restart before its data is deleted brings it back",
            e.message
        );
    }
    drop(one);
    let stopping = server
        .jobs_of(&name)
        .iter()
        .filter(|j| !j.status().is_ended())
        .inspect(|j| j.request_stop())
        .count();
    let grace = format_duration(server.settings.removal_grace);
    let retiring = server.clone();
    let tenant = name.clone();
    tokio::spawn(async move { retiring.retire_tenant(&tenant).await });
    Ok(ok(json!({
        "name": name,
        "stopping_jobs": stopping,
        "removal_grace": grace,
        "note": format!(
            "its jobs were asked to stop; any still running after {grace} is halted; its data \
             is deleted once every job has ended, and until then the name cannot be added again"
        ),
    })))
}
