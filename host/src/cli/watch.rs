//! `sluice run --watch`: deploys a rebuilt plugin file into the running job.

use crate::wasm::Runtime;
use crate::wasm::reload::{DeployError, Outcome, Reloader};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;

/// Watches the component files of a job's `plugin` operators and reducers,
/// and deploys a file whose content changed (by SHA-256), once it has
/// stayed the same for one more poll, so a file being written is not read
/// half-way. Runs until `stop` turns true.
pub async fn watch(
    reloader: Reloader,
    runtime: Runtime,
    files: Vec<(String, PathBuf)>,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) {
    struct Watched {
        operator: String,
        path: PathBuf,
        deployed: Option<String>,
        seen: Option<String>,
    }
    let digest = |bytes: &[u8]| -> String {
        use sha2::Digest;
        crate::wasm::hex(&sha2::Sha256::digest(bytes))
    };
    let mut watched: Vec<Watched> = files
        .into_iter()
        .map(|(operator, path)| {
            let hash = std::fs::read(&path).ok().map(|b| digest(&b));
            Watched {
                operator,
                path,
                deployed: hash.clone(),
                seen: hash,
            }
        })
        .collect();
    for w in &watched {
        tracing::info!(
            "watching {} (operator `{}`) for new versions",
            w.path.display(),
            w.operator
        );
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = crate::signal::stopped(&mut stop) => return,
        }
        for w in &mut watched {
            let bytes = std::fs::read(&w.path).ok();
            let now = bytes.as_deref().map(digest);
            let settled = now.is_some() && now == w.seen;
            w.seen = now.clone();
            let (true, Some(bytes)) = (settled && now != w.deployed, bytes) else {
                continue;
            };
            w.deployed = now;
            // The bytes that were hashed are the bytes loaded.
            let (rt, path) = (runtime.clone(), w.path.clone());
            let loaded = tokio::task::spawn_blocking(move || rt.load_bytes(&bytes, &path)).await;
            let plugin = match loaded {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    tracing::warn!(operator = %w.operator, "new version not deployed: {e}");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(operator = %w.operator, "new version not deployed: {e}");
                    continue;
                }
            };
            let (r, op) = (reloader.clone(), w.operator.clone());
            match tokio::task::spawn_blocking(move || r.deploy(&op, &plugin)).await {
                Ok(Ok(d)) => {
                    let operator = w.operator.clone();
                    tokio::spawn(async move {
                        match d.outcome().await {
                            Outcome::Adopted { .. } => {}
                            Outcome::Refused { version, reason } => tracing::warn!(
                                %operator,
                                "version {version} refused: {reason}"
                            ),
                        }
                    });
                }
                Ok(Err(DeployError::Busy { .. })) => {
                    // Try again at the next poll.
                    w.deployed = None;
                }
                Ok(Err(e)) => tracing::warn!("{e}"),
                Err(e) => tracing::warn!(operator = %w.operator, "new version not deployed: {e}"),
            }
        }
    }
}
