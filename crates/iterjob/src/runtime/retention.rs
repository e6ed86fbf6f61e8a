//! Retention: the workers delete finished jobs (with their partitions and history)
//! once they are older than their state's age, so the jobs and job-events tables do
//! not grow for ever. One worker at a time across every process sharing the store
//! does it, holding the store's `iterjob:retention` lease ([`Store::lease_acquire`]),
//! in short batches ([`Store::job_prune`]) with a pause between them, so claims and
//! checkpoints never wait long behind it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::{JobState, Store, duration_millis, now_millis};

/// The lease the pruning worker holds.
pub(crate) const LEASE: &str = "iterjob:retention";

/// What the workers delete, and how (see [`WorkerConfig::retention`](crate::WorkerConfig::retention)).
///
/// The defaults keep completed and cancelled jobs for 7 days (enough to answer
/// "did last week's backfill run, and how long did it take?") and failed jobs for
/// 30 days: a failure waits for a person, who may be on holiday. River keeps
/// completed jobs a day and discarded ones a week, Sidekiq its dead set six months;
/// a week and a month sit between. `None` keeps that state for ever.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retention {
    /// Completed jobs older than this (since they finished) are deleted. Default: 7 days.
    pub completed: Option<Duration>,
    /// Cancelled jobs older than this are deleted. Default: 7 days.
    pub cancelled: Option<Duration>,
    /// Failed jobs older than this are deleted. Default: 30 days.
    pub failed: Option<Duration>,
    /// How often a worker looks for jobs to delete. Default: 1 min.
    pub interval: Duration,
    /// Jobs (each with its partitions and history) deleted per transaction. Default: 500.
    pub batch: usize,
    /// Pause between two batches, leaving the store to claims and checkpoints: at
    /// least this, and at least three times as long as the batch took, so pruning
    /// takes at most a quarter of a connection's time however slow a batch is (a
    /// backlog of a million old jobs is gone in about three minutes; measured in
    /// BENCHMARKS.md). Unless the pruner falls behind: when a pass over the old jobs
    /// lasts longer than `interval`, jobs finish faster than a quarter of a
    /// connection deletes them, and at that pace the table would grow for ever; the
    /// next pass then rests half as long after each batch, the one after that half
    /// as long again, down to this pause alone, and the gentle pace comes back with
    /// the first pass that ends within `interval`. Default: 20 ms.
    pub pause: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: Duration = Duration::from_secs(24 * 3600);
        Retention {
            completed: Some(7 * DAY),
            cancelled: Some(7 * DAY),
            failed: Some(30 * DAY),
            interval: Duration::from_secs(60),
            batch: 500,
            pause: Duration::from_millis(20),
        }
    }
}

impl Retention {
    /// Keeps every job: nothing is deleted.
    pub fn keep_all() -> Self {
        Retention {
            completed: None,
            cancelled: None,
            failed: None,
            ..Retention::default()
        }
    }

    /// The ages, per finished state (those kept for ever left out).
    pub(crate) fn ages(&self) -> Vec<(JobState, Duration)> {
        [
            (JobState::Completed, self.completed),
            (JobState::Cancelled, self.cancelled),
            (JobState::Failed, self.failed),
        ]
        .into_iter()
        .filter_map(|(state, age)| age.map(|a| (state, a)))
        .collect()
    }
}

/// The lease's length: a pruning worker that dies is replaced after this long.
fn lease_ttl(retention: &Retention) -> Duration {
    (retention.interval * 2).max(Duration::from_secs(30))
}

/// How long the pruner rests after a batch, as a multiple of the batch's own time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Pace {
    factor: f64,
}

impl Pace {
    /// Three times the batch's time: at most a quarter of a connection.
    const GENTLE: f64 = 3.0;

    /// The gentle pace.
    pub(crate) fn gentle() -> Self {
        Pace {
            factor: Self::GENTLE,
        }
    }

    /// The rest after a batch that took `took`: `factor` times that, at least `pause`.
    pub(crate) fn rest(self, pause: Duration, took: Duration) -> Duration {
        pause.max(took.mul_f64(self.factor))
    }

    /// The pace of the next pass, after one that took `took`. A pass longer than
    /// the interval means jobs became old enough faster than this pace deletes them:
    /// the next pass rests half as long (below a tenth of the batch's time, only the
    /// configured pause). A pass within the interval goes back to the gentle pace.
    pub(crate) fn after_pass(self, took: Duration, interval: Duration) -> Self {
        if took <= interval {
            return Pace::gentle();
        }
        let factor = self.factor / 2.0;
        Pace {
            factor: if factor < 0.1 { 0.0 } else { factor },
        }
    }
}

/// How often the pruner says at `info` that it fell behind.
const BEHIND_NOTE: Duration = Duration::from_secs(600);

/// Every `interval`: takes the lease if free, and prunes. Runs until aborted.
///
/// Stops at `stop`, between two statements, never inside one: a statement whose
/// future were dropped could still run on the database after the worker gave the
/// lease up, and take it again.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    retention: Retention,
    holder: String,
    stop: CancellationToken,
) {
    let ttl = lease_ttl(&retention);
    // the first pass soon after the worker starts, so short-lived workers prune too
    let mut wait = retention.interval.min(Duration::from_secs(2));
    let mut pace = Pace::gentle();
    // when "behind" was last said at `info`: a pruner just short of the finish rate
    // flips between paces every few passes, and says so once per `BEHIND_NOTE`
    let mut behind_noted: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
        wait = retention.interval;
        match store.lease_acquire(LEASE, &holder, ttl).await {
            Ok(true) => {
                let started = std::time::Instant::now();
                let result = pass(&*store, &retention, pace, &holder, ttl, &stop).await;
                let took = started.elapsed();
                match result {
                    Ok(_) => {
                        let next = pace.after_pass(took, retention.interval);
                        if next != Pace::gentle() {
                            // behind: what finished during this pass is due already
                            wait = retention.pause;
                            let now = std::time::Instant::now();
                            if behind_noted.is_none_or(|at| now - at >= BEHIND_NOTE) {
                                behind_noted = Some(now);
                                tracing::info!(
                                    pass_took = ?took,
                                    interval = ?retention.interval,
                                    rest_factor = next.factor,
                                    "retention: jobs finish faster than they were deleted; \
                                     the next pass rests less between batches \
                                     (said again at most every 10 minutes; each time at debug)"
                                );
                            } else {
                                tracing::debug!(
                                    pass_took = ?took,
                                    interval = ?retention.interval,
                                    rest_factor = next.factor,
                                    "retention: behind; the next pass rests less between batches"
                                );
                            }
                        }
                        pace = next;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "retention: deleting old finished jobs failed; trying again later")
                    }
                }
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "retention: taking the retention lease failed"),
        }
    }
}

/// One pass: every state, batch after batch, the lease renewed before each batch.
/// Returns how many top-level jobs it deleted.
pub(crate) async fn pass(
    store: &dyn Store,
    retention: &Retention,
    pace: Pace,
    holder: &str,
    ttl: Duration,
    stop: &CancellationToken,
) -> crate::Result<u64> {
    let mut total = 0;
    for (state, age) in retention.ages() {
        let cutoff = now_millis().saturating_sub(duration_millis(age));
        let mut deleted = 0;
        let mut after = 0;
        loop {
            let started = std::time::Instant::now();
            let batch = store
                .job_prune(state, cutoff, after, retention.batch)
                .await?;
            deleted += batch.deleted;
            match batch.last_id {
                Some(last) if (batch.deleted as usize) >= retention.batch => after = last,
                _ => break,
            }
            tokio::select! {
                _ = tokio::time::sleep(pace.rest(retention.pause, started.elapsed())) => {}
                _ = stop.cancelled() => return Ok(total + deleted),
            }
            if !store.lease_acquire(LEASE, holder, ttl).await? {
                tracing::info!("retention: another worker took over pruning");
                return Ok(total + deleted);
            }
        }
        if deleted > 0 {
            metrics::counter!("iterjob_jobs_pruned_total", "state" => state.as_str())
                .increment(deleted);
            tracing::info!(
                state = %state,
                deleted,
                older_than = ?age,
                "retention: deleted old finished jobs with their partitions and history"
            );
        }
        total += deleted;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_gentle_pace_rests_three_batches_and_at_least_the_pause() {
        let pace = Pace::gentle();
        assert_eq!(pace.rest(20 * MS, 40 * MS), 120 * MS);
        assert_eq!(pace.rest(20 * MS, 2 * MS), 20 * MS);
    }

    #[test]
    fn a_pruner_that_falls_behind_rests_less_until_it_keeps_up() {
        let interval = 5_000 * MS;
        let behind = 6_000 * MS;
        let mut pace = Pace::gentle();
        let mut rests = Vec::new();
        for _ in 0..6 {
            pace = pace.after_pass(behind, interval);
            rests.push(pace.rest(MS, 40 * MS));
        }
        assert_eq!(
            rests,
            [
                60 * MS,
                30 * MS,
                15 * MS,
                7_500_000 * Duration::from_nanos(1),
                MS,
                MS
            ],
            "halved after each pass that overran the interval, then only the pause"
        );
        // a pass within the interval: back to a quarter of a connection
        assert_eq!(pace.after_pass(interval, interval), Pace::gentle());
    }
}
