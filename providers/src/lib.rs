//! Golek's providers: the SPI every model backend implements, the bounded job queue in front
//! of a provider's worker thread, and the providers themselves (one folder each).
//!
//! A provider lives on one dedicated worker thread, which it owns for its whole life: the
//! factory builds it there (loading is blocking), then [`Provider::serve`] runs until the queue
//! closes. The async runtime never runs inference.

mod factory;
mod fair;
mod faults;
#[cfg(feature = "gguf")]
pub mod gguf;
mod heartbeat;
mod metrics;
#[cfg(feature = "onnx")]
pub mod onnx;
#[cfg(any(feature = "openai", feature = "sse"))]
pub mod openai;
mod outcome;
mod queue;
#[cfg(any(feature = "triton", feature = "openai"))]
mod remote;
mod spi;
#[cfg(feature = "triton")]
pub mod triton;

pub use factory::build_provider;
pub use metrics::describe as describe_metrics;
pub use queue::{job_queue, EventTx, Faults, Job, JobQueue, JobSender, OutcomeHook, SubmitError};
pub use spi::{Provider, ProviderError, ProviderInfo, Result, TensorSpec};
