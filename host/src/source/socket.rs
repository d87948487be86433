//! The `socket` source: lines from a TCP server, like Spark's
//! `socketTextStream`.

use super::lines::LineSplitter;
use crate::model::batch::Batch;
use crate::model::time::now_ms;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};

/// Reads lines from a TCP server, reconnecting with backoff, until `stop`.
pub(super) async fn read_socket(
    address: &str,
    tx: &mpsc::Sender<Batch>,
    stop: &mut watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let connect = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(address),
        );
        let stream = tokio::select! {
            r = connect => r,
            _ = crate::signal::stopped(stop) => return,
        };
        match stream {
            Ok(Ok(mut stream)) => {
                tracing::info!("socket source connected to {address}");
                backoff = Duration::from_millis(100);
                let mut splitter = LineSplitter::default();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let read = tokio::select! {
                        r = stream.read(&mut buf) => r,
                        _ = crate::signal::stopped(stop) => {
                            if let Some(chunk) = splitter.take_if(1) {
                                let _ = tx.send(chunk).await;
                            }
                            return;
                        }
                    };
                    match read {
                        Ok(0) | Err(_) => {
                            // A reset connection cuts a line short: only an
                            // orderly close makes the last fragment a line.
                            let last = if read.is_ok() {
                                splitter.finish(now_ms())
                            } else {
                                splitter.take_if(1)
                            };
                            if let Some(chunk) = last
                                && tx.send(chunk).await.is_err()
                            {
                                return;
                            }
                            tracing::warn!(
                                "socket source: connection to {address} closed; reconnecting"
                            );
                            break;
                        }
                        Ok(n) => {
                            splitter.push(&buf[..n], now_ms());
                            // Forward what arrived now: a socket is a live stream.
                            if let Some(chunk) = splitter.take_if(1)
                                && tx.send(chunk).await.is_err()
                            {
                                return;
                            }
                        }
                    }
                }
            }
            Ok(Err(e)) => tracing::warn!(
                "socket source: cannot connect to {address}: {e}; retrying in {backoff:?}"
            ),
            Err(_) => tracing::warn!(
                "socket source: connecting to {address} timed out; retrying in {backoff:?}"
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = crate::signal::stopped(stop) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
