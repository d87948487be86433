//! The `socket` source: lines from a TCP server, like Spark's
//! `socketTextStream`.

use super::lines::LineSplitter;
use crate::model::time::now_ms;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};

/// Reads lines from a TCP server, reconnecting with backoff, until `stop`;
/// fails on a line longer than `max_line` bytes.
pub(super) async fn read_socket(
    address: &str,
    tx: &mpsc::Sender<super::Lines>,
    stop: &mut watch::Receiver<bool>,
    max_line: usize,
) -> Result<(), String> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let connect = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(address),
        );
        let stream = tokio::select! {
            r = connect => r,
            _ = crate::signal::stopped(stop) => return Ok(()),
        };
        match stream {
            Ok(Ok(mut stream)) => {
                tracing::info!("socket source connected to {address}");
                backoff = Duration::from_millis(100);
                let mut splitter = LineSplitter::new(max_line);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let read = tokio::select! {
                        r = stream.read(&mut buf) => r,
                        _ = crate::signal::stopped(stop) => {
                            if let Some(chunk) = splitter.take_if(1) {
                                let _ = tx.send(chunk.into()).await;
                            }
                            return Ok(());
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
                                && tx.send(chunk.into()).await.is_err()
                            {
                                return Ok(());
                            }
                            tracing::warn!(
                                "socket source: connection to {address} closed; reconnecting"
                            );
                            break;
                        }
                        Ok(n) => {
                            if let Err(e) = splitter.push(&buf[..n], now_ms()) {
                                return Err(format!("from {address}: {e}"));
                            }
                            // Forward what arrived now: a socket is a live stream.
                            if let Some(chunk) = splitter.take_if(1)
                                && tx.send(chunk.into()).await.is_err()
                            {
                                return Ok(());
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
            _ = crate::signal::stopped(stop) => return Ok(()),
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
