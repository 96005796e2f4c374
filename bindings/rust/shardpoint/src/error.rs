use std::ffi::{c_int, CStr};
use std::fmt;

use shardpoint_sys as sys;

/// The stable error codes of the C ABI (`shardpoint_error`), as a Rust enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    Inval,
    NoMem,
    Io,
    NotFound,
    Exists,
    Format,
    Checksum,
    Truncated,
    Version,
    Dtype,
    Shape,
    Path,
    Conflict,
    Rank,
    Comm,
    Uncovered,
    State,
    Kind,
    Range,
    /// No space left on the device, or a disk quota is exhausted.
    NoSpace,
    /// The save WAS committed (the new checkpoint is in place and loads), but a step after the
    /// commit point (the directory fsync) failed: it may not survive a power loss.
    NotDurable,
    /// A progress closure asked to stop (`ControlFlow::Break`); a canceled save commits nothing.
    Canceled,
    Internal,
    /// A code newer than this binding.
    Other(i32),
}

impl ErrorCode {
    pub fn from_raw(code: i32) -> ErrorCode {
        match code {
            sys::SHARDPOINT_EINVAL => ErrorCode::Inval,
            sys::SHARDPOINT_ENOMEM => ErrorCode::NoMem,
            sys::SHARDPOINT_EIO => ErrorCode::Io,
            sys::SHARDPOINT_ENOTFOUND => ErrorCode::NotFound,
            sys::SHARDPOINT_EEXISTS => ErrorCode::Exists,
            sys::SHARDPOINT_EFORMAT => ErrorCode::Format,
            sys::SHARDPOINT_ECHECKSUM => ErrorCode::Checksum,
            sys::SHARDPOINT_ETRUNCATED => ErrorCode::Truncated,
            sys::SHARDPOINT_EVERSION => ErrorCode::Version,
            sys::SHARDPOINT_EDTYPE => ErrorCode::Dtype,
            sys::SHARDPOINT_ESHAPE => ErrorCode::Shape,
            sys::SHARDPOINT_EPATH => ErrorCode::Path,
            sys::SHARDPOINT_ECONFLICT => ErrorCode::Conflict,
            sys::SHARDPOINT_ERANK => ErrorCode::Rank,
            sys::SHARDPOINT_ECOMM => ErrorCode::Comm,
            sys::SHARDPOINT_EUNCOVERED => ErrorCode::Uncovered,
            sys::SHARDPOINT_ESTATE => ErrorCode::State,
            sys::SHARDPOINT_EKIND => ErrorCode::Kind,
            sys::SHARDPOINT_ERANGE => ErrorCode::Range,
            sys::SHARDPOINT_ENOSPC => ErrorCode::NoSpace,
            sys::SHARDPOINT_ENOTDURABLE => ErrorCode::NotDurable,
            sys::SHARDPOINT_ECANCELED => ErrorCode::Canceled,
            sys::SHARDPOINT_EINTERNAL => ErrorCode::Internal,
            other => ErrorCode::Other(other),
        }
    }

    pub fn raw(self) -> i32 {
        match self {
            ErrorCode::Inval => sys::SHARDPOINT_EINVAL,
            ErrorCode::NoMem => sys::SHARDPOINT_ENOMEM,
            ErrorCode::Io => sys::SHARDPOINT_EIO,
            ErrorCode::NotFound => sys::SHARDPOINT_ENOTFOUND,
            ErrorCode::Exists => sys::SHARDPOINT_EEXISTS,
            ErrorCode::Format => sys::SHARDPOINT_EFORMAT,
            ErrorCode::Checksum => sys::SHARDPOINT_ECHECKSUM,
            ErrorCode::Truncated => sys::SHARDPOINT_ETRUNCATED,
            ErrorCode::Version => sys::SHARDPOINT_EVERSION,
            ErrorCode::Dtype => sys::SHARDPOINT_EDTYPE,
            ErrorCode::Shape => sys::SHARDPOINT_ESHAPE,
            ErrorCode::Path => sys::SHARDPOINT_EPATH,
            ErrorCode::Conflict => sys::SHARDPOINT_ECONFLICT,
            ErrorCode::Rank => sys::SHARDPOINT_ERANK,
            ErrorCode::Comm => sys::SHARDPOINT_ECOMM,
            ErrorCode::Uncovered => sys::SHARDPOINT_EUNCOVERED,
            ErrorCode::State => sys::SHARDPOINT_ESTATE,
            ErrorCode::Kind => sys::SHARDPOINT_EKIND,
            ErrorCode::Range => sys::SHARDPOINT_ERANGE,
            ErrorCode::NoSpace => sys::SHARDPOINT_ENOSPC,
            ErrorCode::NotDurable => sys::SHARDPOINT_ENOTDURABLE,
            ErrorCode::Canceled => sys::SHARDPOINT_ECANCELED,
            ErrorCode::Internal => sys::SHARDPOINT_EINTERNAL,
            ErrorCode::Other(c) => c,
        }
    }

    /// The library's stable name for the code ("SHARDPOINT_ECHECKSUM").
    pub fn name(self) -> &'static str {
        error_name(self.raw())
    }
}

/// A failed shardpoint call: the C code, its stable name and the library's message.
///
/// Errors the binding detects itself before calling the library (a slice too short for the
/// shape, a string with a NUL byte) use the code the library would use (`EINVAL`, `ERANGE`).
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    code: i32,
    name: &'static str,
    message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error of a failed call. Must run right after the call, on the same thread, because
    /// `shardpoint_last_error()` is thread-local and reset by the next call.
    pub(crate) fn from_last(code: c_int) -> Error {
        // SAFETY: never NULL; copied before any other shardpoint call on this thread.
        let message = unsafe { CStr::from_ptr(sys::shardpoint_last_error()) }.to_string_lossy().into_owned();
        Error { code, name: error_name(code), message }
    }

    /// An error found by the binding itself.
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        let code = code.raw();
        Error { code, name: error_name(code), message: message.into() }
    }

    pub(crate) fn with_context(mut self, context: &str) -> Error {
        if !context.is_empty() {
            self.message = format!("{} ({context})", self.message);
        }
        self
    }

    /// The raw negative code (`SHARDPOINT_E*`).
    pub fn code(&self) -> i32 {
        self.code
    }

    /// The code as an enum, for matching.
    pub fn kind(&self) -> ErrorCode {
        ErrorCode::from_raw(self.code)
    }

    /// The code's stable name, from `shardpoint_error_name`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The library's description of the failure (`shardpoint_last_error`).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.name, self.code, self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("code", &self.code)
            .field("name", &self.name)
            .field("message", &self.message)
            .finish()
    }
}

impl std::error::Error for Error {}

/// `NoSpace` becomes `std::io::ErrorKind::StorageFull`, anything else `Other`; the message is kept.
impl From<Error> for std::io::Error {
    fn from(e: Error) -> std::io::Error {
        let kind = match e.kind() {
            ErrorCode::NoSpace => std::io::ErrorKind::StorageFull,
            ErrorCode::NotFound => std::io::ErrorKind::NotFound,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}

fn error_name(code: i32) -> &'static str {
    // SAFETY: static storage, never NULL.
    let name = unsafe { CStr::from_ptr(sys::shardpoint_error_name(code)) };
    name.to_str().unwrap_or("SHARDPOINT_UNKNOWN")
}

/// Turns a C return code into a `Result`, capturing the message at once.
pub(crate) fn check(rc: c_int) -> Result<()> {
    if rc == sys::SHARDPOINT_OK {
        Ok(())
    } else {
        Err(Error::from_last(rc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_codes_and_io_kinds() {
        let e = Error::new(ErrorCode::NoSpace, "disk full");
        assert_eq!((e.code(), e.name(), e.kind()), (-20, "SHARDPOINT_ENOSPC", ErrorCode::NoSpace));
        let io = std::io::Error::from(e);
        assert_eq!(io.kind(), std::io::ErrorKind::StorageFull);
        assert!(io.to_string().contains("disk full"));
        let e = Error::new(ErrorCode::NotDurable, "dir fsync");
        assert_eq!((e.code(), e.name()), (-21, "SHARDPOINT_ENOTDURABLE"));
        assert_eq!(std::io::Error::from(e).kind(), std::io::ErrorKind::Other);
        assert_eq!(std::io::Error::from(Error::new(ErrorCode::NotFound, "x")).kind(), std::io::ErrorKind::NotFound);
        let e = Error::new(ErrorCode::Canceled, "canceled by the progress callback");
        assert_eq!((e.code(), e.name(), e.kind()), (-22, "SHARDPOINT_ECANCELED", ErrorCode::Canceled));
        assert_eq!(ErrorCode::Canceled.name(), "SHARDPOINT_ECANCELED");
        assert_eq!(ErrorCode::from_raw(-22), ErrorCode::Canceled);
        assert_eq!(e.to_string(), "SHARDPOINT_ECANCELED (-22): canceled by the progress callback");
    }
}
