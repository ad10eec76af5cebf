//! The provider SPI.

pub use golek_protocol::model::{ProviderInfo, TensorSpec};
use golek_protocol::{ErrorCode, ErrorInfo};

use crate::queue::JobQueue;

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The model could not be loaded (missing file, bad graph, runtime library missing).
    #[error("cannot load model: {0}")]
    Load(String),
    /// The request does not fit the model (wrong tensor name, shape, token id).
    #[error("{message}")]
    BadInput { param: String, message: String },
    /// The runtime failed while running a request.
    #[error("inference failed: {0}")]
    Inference(String),
    /// The provider cannot run this kind of request.
    #[error("model does not support {0}")]
    Unsupported(&'static str),
}

pub type Result<T, E = ProviderError> = std::result::Result<T, E>;

impl From<&ProviderError> for ErrorInfo {
    fn from(err: &ProviderError) -> Self {
        match err {
            ProviderError::BadInput { param, message } => ErrorInfo::invalid(param, message),
            ProviderError::Unsupported(_) => {
                ErrorInfo::new(ErrorCode::InvalidRequest, err.to_string())
            }
            ProviderError::Load(_) => ErrorInfo::new(ErrorCode::Unavailable, err.to_string()),
            ProviderError::Inference(_) => {
                ErrorInfo::new(ErrorCode::ProviderError, err.to_string())
            }
        }
    }
}

/// A model backend, owned by its worker thread.
pub trait Provider: Send {
    fn info(&self) -> ProviderInfo;

    /// Serves jobs from `queue` until it closes. Returning an error (or panicking) ends the
    /// worker; its supervisor restarts it with backoff.
    fn serve(&mut self, queue: &JobQueue) -> Result<()>;
}
