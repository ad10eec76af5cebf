//! The Golek node: its command line, its HTTP API, start-up and graceful shutdown.
//!
//! Embedding: [`serve`] runs a whole node (actor tree plus HTTP server) until a shutdown future
//! resolves; [`http::app`] gives the HTTP API as an axum router over a running
//! [`golek_actors::NodeHandle`].

pub mod cli;
pub mod http;
mod keys_cli;
mod metrics;
mod server;
mod status;

pub use server::serve;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
