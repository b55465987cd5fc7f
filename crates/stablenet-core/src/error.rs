//! One error type for the library; every message names the problem and the fix where possible.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("shape mismatch: {0}")]
    Shape(String),
    #[error("bad data: {0}")]
    Data(String),
    #[error("GPU: {0}")]
    Device(String),
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    /// The I/O error is part of the message, not a `source`: a chain printer (anyhow's `{:#}`)
    /// would print it twice.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::File { path: path.into(), msg: msg.into() }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), error: source }
    }
}
