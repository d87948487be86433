//! The tenant's stores: uploaded components and the file area.

use super::MAX_LISTED_FILES;
use super::{ApiError, ApiResult, Caller, blocking, created, ok, read_body, write_atomically};
use crate::serve::Server;
use crate::serve::spec::{self};
use crate::serve::tenant::{Tenant, check_name};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

pub(super) async fn upload_plugin(
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
    blocking(move || write_atomically(&path, &bytes)).await?;
    let info = plugin.info();
    Ok(created(json!({
        "name": name,
        "world": info.world,
        "contract": info.contract,
        "size": info.size,
        "sha256": info.sha256,
    })))
}

pub(super) async fn list_plugins(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
) -> ApiResult {
    let dir = server.tenant_dir(&tenant.name).join("plugins");
    let plugins: Vec<Value> = blocking(move || {
        Ok(spec::known_plugins(&dir)
            .into_iter()
            .map(|name| {
                let size = std::fs::metadata(dir.join(format!("{name}.wasm")))
                    .map(|m| m.len())
                    .unwrap_or(0);
                json!({ "name": name, "size": size })
            })
            .collect())
    })
    .await?;
    Ok(ok(json!({ "plugins": plugins })))
}

/// A path in the tenant's file area, or `400`.
pub(super) fn file_path(server: &Server, tenant: &Tenant, path: &str) -> ApiResult<PathBuf> {
    let root = server.tenant_dir(&tenant.name).join("files");
    let p = spec::confine(std::path::Path::new(path), &root)
        .map_err(|m| ApiError::bad(format!("file path {m}")))?;
    Ok(p)
}

pub(super) async fn upload_file(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let target = file_path(&server, &tenant, &path)?;
    let is_dir = {
        let target = target.clone();
        blocking(move || Ok(target.is_dir())).await?
    };
    if is_dir {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{path:?} is a directory"),
        ));
    }
    let bytes = read_body(&headers, body, server.settings.max_plugin_size, "a file").await?;
    let size = bytes.len();
    blocking(move || write_atomically(&target, &bytes)).await?;
    Ok(created(json!({ "path": path, "size": size })))
}

#[derive(Deserialize)]
pub(super) struct FileQuery {
    offset: Option<u64>,
}

pub(super) async fn read_file(
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

pub(super) async fn list_files(
    State(server): State<Arc<Server>>,
    Caller(tenant): Caller,
) -> ApiResult {
    let root = server.tenant_dir(&tenant.name).join("files");
    let files = blocking(move || Ok(list_area(&root))).await?;
    Ok(ok(json!({ "files": files })))
}

/// The files under `root` (at most [`MAX_LISTED_FILES`]), with their paths
/// relative to it and their sizes.
fn list_area(root: &std::path::Path) -> Vec<Value> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let path = entry.path();
            if meta.is_dir() {
                dirs.push(path);
            } else if files.len() < MAX_LISTED_FILES {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                files.push(json!({ "path": rel.to_string_lossy(), "size": meta.len() }));
            }
        }
    }
    files
}
