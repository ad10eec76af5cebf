//! The actors crate's error type.

use golek_protocol::{ErrorCode, ErrorInfo};

#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    #[error("registry store error: {0}")]
    Store(#[from] sled::Error),
    #[error("registry data is corrupt: {0}")]
    Corrupt(String),
    #[error(
        "registry format version {found} is not supported (this build reads version {supported})"
    )]
    FormatVersion { found: u32, supported: u32 },
    #[error("the data dir {} is in use by another golek process (its registry is locked)", .0.display())]
    Locked(std::path::PathBuf),
    #[error("actor {0} did not answer")]
    Unavailable(String),
    #[error("cannot start actor {name}: {message}")]
    Spawn { name: String, message: String },
}

pub type Result<T, E = ActorError> = std::result::Result<T, E>;

impl From<&ActorError> for ErrorInfo {
    fn from(err: &ActorError) -> Self {
        let code = match err {
            ActorError::Unavailable(_) => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        };
        ErrorInfo::new(code, err.to_string())
    }
}
