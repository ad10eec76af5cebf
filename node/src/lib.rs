//! The Golek node: its command line, its HTTP API, start-up and graceful shutdown.
//!
//! Embedding: [`serve`] runs a whole node (actor tree plus HTTP server) until a shutdown future
//! resolves; [`http::app`] gives the HTTP API as an axum router over a running
//! [`golek_actors::NodeHandle`].

pub mod cli;
mod config_cli;
pub mod doctor;
mod fleet_cli;
pub mod http;
mod keys_cli;
pub mod logging;
mod metrics;
mod model_cli;
mod plugin_cli;
mod reload;
mod run_cli;
mod runtime;
mod server;
mod status;
pub mod telemetry;

pub use runtime::{Events, Runtime, RuntimeBuilder};
pub use server::{serve, with_stored_changes};

/// Logs to stderr as text, filtered by `RUST_LOG` (default `info`), for commands that load no
/// configuration and for embedders; `golek serve` installs the configured log instead.
pub fn init_tracing() {
    logging::install_default();
}
