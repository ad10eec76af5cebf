//! The provider SPI.

use golek_protocol::inference::Capabilities;
use golek_protocol::{ErrorCode, ErrorInfo};
use serde::{Deserialize, Serialize};

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

/// A model input or output as the model declares it; `-1` marks a dynamic dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    /// KServe v2 datatype name (`FP32`, `INT64`, ...).
    pub datatype: String,
    pub shape: Vec<i64>,
}

/// What a loaded provider tells the node about its model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderInfo {
    pub capabilities: Capabilities,
    /// Length of the embedding vectors, for embedding models.
    pub embedding_dims: Option<usize>,
    /// Inputs longer than this are truncated.
    pub max_input_tokens: Option<usize>,
    /// Token ids must be below this.
    pub vocab_size: Option<usize>,
    /// Tokens one sequence may hold (prompt plus generated), for generation models.
    pub context_tokens: Option<usize>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

impl ProviderInfo {
    /// What the front door checks against this model (the protocol's one authority).
    pub fn limits(&self) -> golek_protocol::limits::ModelLimits {
        golek_protocol::limits::ModelLimits {
            context_tokens: self.context_tokens,
            vocab_size: self.vocab_size,
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
