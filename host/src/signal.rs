//! Stopping: the flag every source and job watches, the process signals
//! that raise it, and the [`Halt`] that ends a job which does not stop. The
//! command line and the server stop jobs the same way, so both take these
//! from here.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

/// Resolves when `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A job's forced stop. A stop request lets the batch in progress finish,
/// which can take as long as an operator call may run; a raised halt ends
/// every operator call of the job at its next deadline check instead
/// (within about 100 ms), and every call after it at once, each failing
/// with a host error, so the job ends. Clones share one flag.
///
/// Operator instances learn their job's halt from the thread that creates
/// them: a job's worker threads [`install`](Halt::install) it as they start.
///
/// ```
/// use sluice::signal::Halt;
///
/// let halt = Halt::default();
/// std::thread::spawn({
///     let halt = halt.clone();
///     move || {
///         halt.install();
///         assert!(Halt::current().is_some());
///     }
/// })
/// .join()
/// .unwrap();
/// assert!(Halt::current().is_none());
/// halt.raise();
/// assert!(halt.is_raised());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Halt(Arc<AtomicBool>);

thread_local! {
    static CURRENT: RefCell<Option<Halt>> = const { RefCell::new(None) };
}

impl Halt {
    /// Raises the halt; it stays raised.
    pub fn raise(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the halt was raised.
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Makes this the halt of the operator instances the calling thread
    /// creates from now on; for a thread that works for one job.
    pub fn install(&self) {
        CURRENT.with(|c| *c.borrow_mut() = Some(self.clone()));
    }

    /// The halt installed on the calling thread, if any.
    pub fn current() -> Option<Halt> {
        CURRENT.with(|c| c.borrow().clone())
    }
}
