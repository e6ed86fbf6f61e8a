//! The rate-limited kind of the `iterjob-pace` binary: [`PacedItems`].

use std::io::Write;
use std::path::PathBuf;

use iterjob::enumerator::{self, Enumerator, EnumeratorExt};
use iterjob::{Job, JobContext, JobError, KindSettings, RateLimit};
use serde::{Deserialize, Serialize};

/// The environment variable `iterjob-pace` reads its rate limit from (items per
/// second, over every worker process on the database).
pub const RATE_ENV: &str = "ITERJOB_PACE_RATE";

/// The rate limit when [`RATE_ENV`] is not set.
pub const DEFAULT_RATE: u64 = 100;

/// `paced_items`: walks `0..n` in batches of `batch` under a rate limit of
/// [`PacedItems::rate`] items per second shared by every worker process on the
/// store, and appends one line per batch, `<unix time in µs> <items>`, to
/// `<log_dir>/<pid>.log`, so a test can measure the rate the workers achieved
/// together and each on its own.
#[derive(Clone, Debug)]
pub struct PacedItems {
    /// Items per second, over all workers.
    pub rate: u64,
}

/// Parameters of [`PacedItems`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PacedParams {
    /// Items: `0..n`.
    pub n: i64,
    /// Items per call of the work (each counts against the limit).
    pub batch: usize,
    /// Directory of the per-process timestamp logs (must exist).
    pub log_dir: PathBuf,
}

impl PacedItems {
    /// The kind with the rate of [`RATE_ENV`], or [`DEFAULT_RATE`].
    ///
    /// # Panics
    /// When [`RATE_ENV`] is set but is not a positive whole number.
    pub fn from_env() -> Self {
        let rate = match std::env::var(RATE_ENV) {
            Ok(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|r| *r > 0)
                .unwrap_or_else(|| {
                    panic!("{RATE_ENV}={v:?}: expected a positive number of items per second")
                }),
            Err(_) => DEFAULT_RATE,
        };
        PacedItems { rate }
    }
}

impl Job for PacedItems {
    const KIND: &'static str = "paced_items";
    type Params = PacedParams;
    type Cursor = i64;
    type Item = Vec<i64>;

    fn enumerate(
        &self,
        params: &PacedParams,
        cursor: Option<i64>,
    ) -> Result<impl Enumerator<Vec<i64>, i64>, JobError> {
        if params.batch == 0 {
            return Err(JobError::fatal("paced_items: `batch` must be at least 1"));
        }
        Ok(enumerator::range(0..params.n, cursor).batched(params.batch))
    }

    async fn process(
        &self,
        ctx: &JobContext<PacedParams>,
        batch: Vec<i64>,
    ) -> Result<(), JobError> {
        let at = iterjob::store::now_micros();
        let path = ctx
            .params
            .log_dir
            .join(format!("{}.log", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| JobError::retryable(format!("open {}: {e}", path.display())))?;
        writeln!(file, "{at} {}", batch.len())
            .map_err(|e| JobError::retryable(format!("append to {}: {e}", path.display())))?;
        Ok(())
    }

    fn count_items(&self, batch: &Vec<i64>) -> u64 {
        batch.len() as u64
    }

    fn settings(&self) -> KindSettings {
        KindSettings::default().rate_limit(RateLimit::per_second(self.rate))
    }
}
