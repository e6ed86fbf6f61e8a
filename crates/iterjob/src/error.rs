//! Errors: [`Error`] for the library and stores, [`JobError`] for the outcome of a job's own code.

use std::fmt;
use std::time::Duration;

use crate::store::{JobId, JobState};

/// A boxed error from user code or a backend driver.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`] as its default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in iterjob itself (stores, registry, runtime).
///
/// Errors a user can act on say what failed, with which job or kind, and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The job does not exist in the store.
    #[error("job {0} not found; the `jobs` command lists the jobs this store holds")]
    JobNotFound(JobId),

    /// The run token no longer matches: another worker claimed the job after this
    /// worker's lease expired, or the job was released. The write was rejected.
    #[error(
        "job {job}: lease lost (another worker owns it now, or it was released); the write was rejected"
    )]
    LeaseLost {
        /// The job whose lease was lost.
        job: JobId,
    },

    /// An admin action does not apply to the job's current state.
    #[error("job {job} is {state}; cannot {action} it ({hint})")]
    InvalidTransition {
        /// The job.
        job: JobId,
        /// Its current state.
        state: JobState,
        /// The action attempted (`pause`, `resume`, `cancel`, `retry`).
        action: &'static str,
        /// What the user can do instead.
        hint: &'static str,
    },

    /// No job kind with that name is registered.
    #[error("unknown job kind `{kind}`; registered kinds: {known}")]
    UnknownKind {
        /// The name asked for.
        kind: String,
        /// The registered kinds, comma separated.
        known: String,
    },

    /// Parameters do not deserialize into the kind's parameter type.
    #[error("parameters for job kind `{kind}` are invalid: {message}")]
    InvalidParams {
        /// The kind.
        kind: String,
        /// The deserializer's message; it names the offending field.
        message: String,
    },

    /// A value could not be serialized to JSON (a cursor or parameters).
    #[error("could not serialize {what} to JSON: {source}")]
    Serialize {
        /// What was being serialized.
        what: &'static str,
        /// The underlying error.
        source: serde_json::Error,
    },

    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The store's data is not what this version of iterjob expects.
    #[error("store data is corrupt or from another iterjob version: {0}")]
    Corrupt(String),

    /// The backend (database driver, file system) failed.
    #[error("store backend error: {0}")]
    Backend(#[source] BoxError),
}

impl Error {
    /// Wraps a backend driver error.
    pub fn backend(err: impl Into<BoxError>) -> Self {
        Error::Backend(err.into())
    }
}

/// How a job's code (its enumerator, its work or a hook) failed, and what the runtime
/// should do about it.
///
/// Any error type converts into [`JobError::Retryable`] with `?`, so the common case
/// needs no ceremony; use [`JobError::fatal`] for errors that a retry cannot fix and
/// [`JobError::retry_after`] when the failing system says when to come back.
///
/// ```
/// use iterjob::JobError;
/// use std::time::Duration;
///
/// fn parse(raw: &str) -> Result<u32, JobError> {
///     // a malformed input never gets better: fail without retrying
///     raw.parse::<u32>().map_err(JobError::fatal)
/// }
///
/// fn rate_limited() -> Result<(), JobError> {
///     Err(JobError::retry_after(Duration::from_secs(30), "upstream answered 429"))
/// }
/// # assert!(parse("x").unwrap_err().is_fatal());
/// # assert!(rate_limited().is_err());
/// ```
pub enum JobError {
    /// Retry with exponential backoff, from the last checkpoint, while attempts remain.
    Retryable(BoxError),
    /// Do not retry: the job fails at once.
    Fatal(BoxError),
    /// Retry after this delay, from the last checkpoint (uses up an attempt).
    RetryAfter(Duration, BoxError),
    /// Something outside the job is unavailable for now — its database is full,
    /// locked or restarting, a pool has no free connection — so the item could not be
    /// worked on. Not the job's fault: the run ends as an interruption (reason
    /// `unavailable`), back to the queue after this delay from the last checkpoint,
    /// and **uses up no attempt**, however long the outage lasts. The error is logged
    /// with each interruption. `Transactional` returns it for transient database
    /// errors; return it from your own code for the same kind of fault.
    Unavailable(Duration, BoxError),
}

impl JobError {
    /// A retryable error.
    pub fn retryable(err: impl Into<BoxError>) -> Self {
        JobError::Retryable(err.into())
    }

    /// An error that a retry cannot fix: the job fails without further attempts.
    pub fn fatal(err: impl Into<BoxError>) -> Self {
        JobError::Fatal(err.into())
    }

    /// Retry after `delay` (for example when an upstream answered 429 with `Retry-After`).
    pub fn retry_after(delay: Duration, err: impl Into<BoxError>) -> Self {
        JobError::RetryAfter(delay, err.into())
    }

    /// A fault outside the job ([`JobError::Unavailable`]): try again after `delay`,
    /// without using up an attempt.
    pub fn unavailable(delay: Duration, err: impl Into<BoxError>) -> Self {
        JobError::Unavailable(delay, err.into())
    }

    /// True for [`JobError::Fatal`].
    pub fn is_fatal(&self) -> bool {
        matches!(self, JobError::Fatal(_))
    }

    /// The underlying error.
    pub fn source_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        match self {
            JobError::Retryable(e)
            | JobError::Fatal(e)
            | JobError::RetryAfter(_, e)
            | JobError::Unavailable(_, e) => e.as_ref(),
        }
    }

    /// The error and its cause chain on one line: `outer: cause: root cause`.
    pub fn chain(&self) -> String {
        error_chain(self.source_error())
    }
}

/// Formats an error and its `source()` chain on one line, separated by `: `.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

impl<E> From<E> for JobError
where
    E: Into<BoxError>,
{
    fn from(err: E) -> Self {
        JobError::Retryable(err.into())
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::Retryable(e) => f.debug_tuple("Retryable").field(e).finish(),
            JobError::Fatal(e) => f.debug_tuple("Fatal").field(e).finish(),
            JobError::RetryAfter(d, e) => f.debug_tuple("RetryAfter").field(d).field(e).finish(),
            JobError::Unavailable(d, e) => f.debug_tuple("Unavailable").field(d).field(e).finish(),
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::Retryable(_) => write!(f, "{}", self.chain()),
            JobError::Fatal(_) => write!(f, "fatal: {}", self.chain()),
            JobError::RetryAfter(d, _) => {
                write!(f, "{} (retry after {} ms)", self.chain(), d.as_millis())
            }
            JobError::Unavailable(d, _) => write!(
                f,
                "unavailable: {} (again in {} ms, no attempt used)",
                self.chain(),
                d.as_millis()
            ),
        }
    }
}
