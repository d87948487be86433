//! The soak test, in a test binary of its own: `cargo test` runs test
//! binaries one after another, so nothing else competes with the
//! throughput it measures.

// The server harness of the integration tests; the soak uses part of it.
#[allow(dead_code)]
#[path = "../integration/server.rs"]
mod server;
mod soak;
