//! Errors a plugin returns to the host, with context.

use crate::wit;
use std::fmt;

/// What kind of failure, as the host sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad config or input; retrying will not help.
    InvalidInput,
    /// It ran and failed; a retry may succeed.
    Failed,
    /// A capability was denied by the host.
    Denied,
    /// The plugin does not implement this call.
    Unsupported,
}

/// A plugin error: a kind and a message with context prepended (`a: b: cause`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Failed, message)
    }
    /// Prepends context: `context: message`.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
    /// Host capability errors come back as strings; "denied:" marks a denial.
    pub(crate) fn from_host(what: &str, message: String) -> Self {
        let kind = if message.starts_with("denied") {
            ErrorKind::Denied
        } else {
            ErrorKind::Failed
        };
        Error::new(kind, format!("{what}: {message}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::invalid_input(format!("json: {e}"))
    }
}

impl From<Error> for wit::PluginError {
    fn from(e: Error) -> Self {
        wit::PluginError {
            kind: match e.kind {
                ErrorKind::InvalidInput => wit::ErrorKind::InvalidInput,
                ErrorKind::Failed => wit::ErrorKind::Failed,
                ErrorKind::Denied => wit::ErrorKind::Denied,
                ErrorKind::Unsupported => wit::ErrorKind::Unsupported,
            },
            message: e.message,
        }
    }
}

/// Adds context to any `Result` whose error displays, as `anyhow` does.
pub trait Context<T> {
    /// Wraps the error as [`ErrorKind::Failed`] (keeps the kind of an [`Error`]).
    fn context(self, context: impl fmt::Display) -> Result<T>;
    /// Like `context`, computed lazily.
    fn with_context<D: fmt::Display, F: FnOnce() -> D>(self, f: F) -> Result<T>;
}

impl<T, E: Into<ContextSource>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.into().0.context(context))
    }
    fn with_context<D: fmt::Display, F: FnOnce() -> D>(self, f: F) -> Result<T> {
        self.map_err(|e| e.into().0.context(f()))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.ok_or_else(|| Error::failed(context.to_string()))
    }
    fn with_context<D: fmt::Display, F: FnOnce() -> D>(self, f: F) -> Result<T> {
        self.ok_or_else(|| Error::failed(f().to_string()))
    }
}

/// Anything [`Context`] can wrap.
#[doc(hidden)]
#[derive(Debug)]
pub struct ContextSource(Error);

impl From<Error> for ContextSource {
    fn from(e: Error) -> Self {
        ContextSource(e)
    }
}
impl From<String> for ContextSource {
    fn from(e: String) -> Self {
        ContextSource(Error::failed(e))
    }
}
impl From<&str> for ContextSource {
    fn from(e: &str) -> Self {
        ContextSource(Error::failed(e))
    }
}
impl From<serde_json::Error> for ContextSource {
    fn from(e: serde_json::Error) -> Self {
        ContextSource(Error::from(e))
    }
}
impl From<std::num::ParseFloatError> for ContextSource {
    fn from(e: std::num::ParseFloatError) -> Self {
        ContextSource(Error::invalid_input(e.to_string()))
    }
}
impl From<std::num::ParseIntError> for ContextSource {
    fn from(e: std::num::ParseIntError) -> Self {
        ContextSource(Error::invalid_input(e.to_string()))
    }
}
impl From<std::string::FromUtf8Error> for ContextSource {
    fn from(e: std::string::FromUtf8Error) -> Self {
        ContextSource(Error::failed(e.to_string()))
    }
}
