//! Golek's pure data types, shared by every crate of the workspace.
//!
//! - [`openai`]: the OpenAI-compatible HTTP schemas (requests as clients send them, responses).
//! - [`inference`]: the internal, validated request a provider runs and the events it emits.
//! - [`generation`]: structured output, tools and log probabilities of a generation.
//! - [`validate`]: client input (OpenAI-compatible JSON) checked into the internal request.
//! - [`error`]: the small error-code enum every layer maps its errors to, with its HTTP status.
//!
//! This crate holds data only: no async runtime, no actors, no I/O.

mod checks;
pub mod cluster;
pub mod cluster_v2;
pub mod deploy;
mod error;
pub mod generation;
pub mod half;
pub mod inference;
pub mod kserve;
pub mod limits;
pub mod model;
pub mod openai;
pub mod trace;
pub mod validate;

pub use error::{ErrorCode, ErrorInfo};
