//! Queues as operators see them: paused or not, how many jobs in each state, and
//! the backlog an autoscaler acts on.
//!
//! A store keeps one thing per queue, whether it is paused ([`QueuePause`]), and
//! answers one aggregate query ([`QueueRow`]: counts and sums per queue, kind and
//! state). Everything else — the per-queue summary, the rates and the estimate of
//! the work left — is computed here, once, for every store by [`summarize`].
//!
//! A partitioned job counts as its partitions (the units that run): a parent that
//! was split is left out of every figure, one not yet split counts as one job.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::store::{JobState, Millis};

/// A paused queue: no job is claimed from it until it is resumed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePause {
    /// The queue's name.
    pub queue: String,
    /// When it was paused (the store's clock).
    pub since: Millis,
    /// Whether the jobs running in it when it was paused (or claimed just before)
    /// stop at their next item and go back to the queue ([`QueuePauseMode::Interrupt`]),
    /// or finish their current run ([`QueuePauseMode::LetRun`]).
    pub mode: QueuePauseMode,
}

/// What pausing a queue does to the jobs already running in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueuePauseMode {
    /// The default: every run of the queue stops at its next item boundary (within
    /// about a second: workers look every [`WorkerConfig::control_interval`](crate::WorkerConfig::control_interval)),
    /// checkpoints and goes back to the queue as an interruption (reason
    /// `queue_paused`, no attempt used), where it waits until the queue is resumed.
    /// Interrupting costs nothing but a checkpoint, and an operator who pauses a
    /// queue during an incident wants its load gone now, not when a run that may
    /// last hours ends.
    #[default]
    Interrupt,
    /// Runs already going finish their run (their time slice, or the whole
    /// collection); only new claims stop.
    LetRun,
}

impl QueuePauseMode {
    /// The mode's name as stored and printed: `interrupt` or `let_run`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueuePauseMode::Interrupt => "interrupt",
            QueuePauseMode::LetRun => "let_run",
        }
    }

    /// Parses [`QueuePauseMode::as_str`]'s names.
    ///
    /// # Errors
    /// A message naming the unknown mode.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "interrupt" => Ok(QueuePauseMode::Interrupt),
            "let_run" => Ok(QueuePauseMode::LetRun),
            other => Err(format!(
                "unknown queue pause mode `{other}` (expected interrupt or let_run)"
            )),
        }
    }
}

/// One row of a store's queue aggregate: the jobs of one queue, kind and state
/// (split parents left out). Stores compute it with one `GROUP BY`; see
/// [`Store::queue_rows`](crate::store::Store::queue_rows).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRow {
    /// The queue.
    pub queue: String,
    /// The kind.
    pub kind: String,
    /// The state.
    pub state: JobState,
    /// Jobs in this queue, kind and state.
    pub jobs: u64,
    /// Of them, those claimable at `now` (queued or retrying, `run_at <= now`).
    pub claimable: u64,
    /// The earliest `run_at` among the claimable ones.
    pub oldest_claimable: Option<Millis>,
    /// Their summed `items_done`.
    pub items_done: u64,
    /// Their summed `running_ms`.
    pub running_ms: u64,
    /// Items left (`items_total - items_done`, known totals only) of the jobs that
    /// are running or claimable.
    pub active_items_left: u64,
    /// Running or claimable jobs whose total is not known yet.
    pub active_without_total: u64,
}

/// One queue, summarized for operators (`iterjob queues`) and autoscalers
/// (`/metrics`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    /// The queue's name.
    pub queue: String,
    /// Set while the queue is paused.
    pub paused: Option<QueuePause>,
    /// Jobs per state (every state, zero when none).
    pub counts: BTreeMap<JobState, u64>,
    /// Jobs that could be claimed now: queued or retrying and due. Zero while the
    /// queue is paused (see `held`): this is the backlog a worker could take.
    pub waiting: u64,
    /// Due jobs a pause holds back (zero unless paused).
    pub held: u64,
    /// Queued or retrying jobs due later (scheduled, or backing off).
    pub scheduled: u64,
    /// How long the oldest waiting job has been due, in milliseconds (`None`
    /// when none waits).
    pub oldest_wait_ms: Option<u64>,
    /// Items left in the running and waiting jobs whose totals are known.
    pub items_left: u64,
    /// The estimated time the running and waiting jobs still need, in seconds of
    /// one worker slot: items left at each kind's measured rate, plus, for jobs
    /// whose total is not known yet, the kind's average completed job. Divide by
    /// the slots a worker runs (its concurrency) for a worker count.
    pub work_left_secs: f64,
    /// Running or waiting jobs whose work could not be estimated (their kind has
    /// neither a measured rate nor a completed job yet).
    pub unestimated_jobs: u64,
}

/// Summarizes a store's aggregate rows and pauses, per queue, sorted by name.
/// Paused queues without jobs are listed too.
pub fn summarize(rows: &[QueueRow], pauses: &[QueuePause], now: Millis) -> Vec<QueueStats> {
    // each kind's speed, over every queue and state: items per millisecond of
    // running, and the average running time of a completed job
    #[derive(Default)]
    struct Speed {
        items: u64,
        ms: u64,
        completed_jobs: u64,
        completed_ms: u64,
    }
    let mut speeds: HashMap<&str, Speed> = HashMap::new();
    for row in rows {
        let speed = speeds.entry(row.kind.as_str()).or_default();
        if row.running_ms > 0 {
            speed.items += row.items_done;
            speed.ms += row.running_ms;
        }
        if row.state == JobState::Completed {
            speed.completed_jobs += row.jobs;
            speed.completed_ms += row.running_ms;
        }
    }

    let paused: HashMap<&str, &QueuePause> = pauses.iter().map(|p| (p.queue.as_str(), p)).collect();
    let mut queues: BTreeMap<&str, QueueStats> = BTreeMap::new();
    let blank = |name: &str| QueueStats {
        queue: name.to_string(),
        paused: paused.get(name).map(|p| (*p).clone()),
        counts: JobState::ALL.into_iter().map(|s| (s, 0)).collect(),
        waiting: 0,
        held: 0,
        scheduled: 0,
        oldest_wait_ms: None,
        items_left: 0,
        work_left_secs: 0.0,
        unestimated_jobs: 0,
    };
    for pause in pauses {
        queues
            .entry(pause.queue.as_str())
            .or_insert_with(|| blank(&pause.queue));
    }
    for row in rows {
        let stats = queues
            .entry(row.queue.as_str())
            .or_insert_with(|| blank(&row.queue));
        *stats.counts.entry(row.state).or_default() += row.jobs;
        let is_paused = stats.paused.is_some();
        if matches!(row.state, JobState::Queued | JobState::Retrying) {
            stats.scheduled += row.jobs.saturating_sub(row.claimable);
            if is_paused {
                stats.held += row.claimable;
                continue;
            }
            stats.waiting += row.claimable;
            if let Some(oldest) = row.oldest_claimable.filter(|_| row.claimable > 0) {
                let wait = u64::try_from(now.saturating_sub(oldest)).unwrap_or(0);
                stats.oldest_wait_ms = Some(stats.oldest_wait_ms.map_or(wait, |w| w.max(wait)));
            }
        } else if row.state != JobState::Running {
            continue;
        }
        // running, or waiting and claimable: work that is being done or could be now
        stats.items_left += row.active_items_left;
        let speed = &speeds[row.kind.as_str()];
        if row.active_items_left > 0 {
            if speed.items > 0 {
                stats.work_left_secs +=
                    row.active_items_left as f64 * speed.ms as f64 / speed.items as f64 / 1000.0;
            } else if speed.completed_jobs > 0 {
                // a kind whose jobs finish without counting items: a job's worth each
                stats.work_left_secs += active_jobs_with_total(row) as f64
                    * speed.completed_ms as f64
                    / speed.completed_jobs as f64
                    / 1000.0;
            } else {
                stats.unestimated_jobs += active_jobs_with_total(row);
            }
        }
        if row.active_without_total > 0 {
            if speed.completed_jobs > 0 {
                stats.work_left_secs += row.active_without_total as f64 * speed.completed_ms as f64
                    / speed.completed_jobs as f64
                    / 1000.0;
            } else {
                stats.unestimated_jobs += row.active_without_total;
            }
        }
    }
    queues.into_values().collect()
}

/// The running or claimable jobs of `row` with a known total (at least one, since
/// it has items left).
fn active_jobs_with_total(row: &QueueRow) -> u64 {
    let active = if row.state == JobState::Running {
        row.jobs
    } else {
        row.claimable
    };
    active.saturating_sub(row.active_without_total).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(queue: &str, kind: &str, state: JobState) -> QueueRow {
        QueueRow {
            queue: queue.into(),
            kind: kind.into(),
            state,
            ..QueueRow::default()
        }
    }

    #[test]
    fn waiting_work_is_estimated_from_the_kinds_rate() {
        let now = 1_000_000;
        let rows = vec![
            // 1,000 items done in 10 s: 100 items/s
            QueueRow {
                jobs: 2,
                items_done: 1_000,
                running_ms: 10_000,
                ..row("default", "sync", JobState::Completed)
            },
            QueueRow {
                jobs: 3,
                claimable: 2,
                oldest_claimable: Some(now - 5_000),
                active_items_left: 500,
                ..row("default", "sync", JobState::Queued)
            },
            QueueRow {
                jobs: 1,
                active_items_left: 100,
                ..row("default", "sync", JobState::Running)
            },
        ];
        let stats = summarize(&rows, &[], now);
        assert_eq!(stats.len(), 1);
        let q = &stats[0];
        assert_eq!(q.waiting, 2);
        assert_eq!(q.scheduled, 1);
        assert_eq!(q.oldest_wait_ms, Some(5_000));
        assert_eq!(q.items_left, 600);
        assert!(
            (q.work_left_secs - 6.0).abs() < 1e-9,
            "{}",
            q.work_left_secs
        );
        assert_eq!(q.unestimated_jobs, 0);
        assert_eq!(q.counts[&JobState::Queued], 3);
        assert_eq!(q.counts[&JobState::Failed], 0);
    }

    #[test]
    fn jobs_without_totals_count_as_the_kinds_average_job_or_as_unestimated() {
        let rows = vec![
            QueueRow {
                jobs: 4,
                running_ms: 8_000,
                ..row("mail", "send", JobState::Completed)
            },
            QueueRow {
                jobs: 10,
                claimable: 10,
                oldest_claimable: Some(0),
                active_without_total: 10,
                ..row("mail", "send", JobState::Queued)
            },
            QueueRow {
                jobs: 3,
                claimable: 3,
                oldest_claimable: Some(0),
                active_without_total: 3,
                ..row("mail", "new_kind", JobState::Queued)
            },
        ];
        let q = &summarize(&rows, &[], 10)[0];
        assert!(
            (q.work_left_secs - 20.0).abs() < 1e-9,
            "{}",
            q.work_left_secs
        );
        assert_eq!(q.unestimated_jobs, 3);
        assert_eq!(q.waiting, 13);
    }

    #[test]
    fn a_paused_queue_holds_its_waiting_jobs_and_is_listed_without_jobs() {
        let pauses = vec![
            QueuePause {
                queue: "bulk".into(),
                since: 5,
                mode: QueuePauseMode::Interrupt,
            },
            QueuePause {
                queue: "empty".into(),
                since: 5,
                mode: QueuePauseMode::LetRun,
            },
        ];
        let rows = vec![QueueRow {
            jobs: 7,
            claimable: 7,
            oldest_claimable: Some(0),
            active_items_left: 70,
            ..row("bulk", "sync", JobState::Queued)
        }];
        let stats = summarize(&rows, &pauses, 10);
        assert_eq!(stats.len(), 2);
        assert_eq!(stats[0].queue, "bulk");
        assert_eq!((stats[0].waiting, stats[0].held), (0, 7));
        assert_eq!(stats[0].oldest_wait_ms, None);
        assert_eq!(stats[0].work_left_secs, 0.0);
        assert_eq!(stats[1].queue, "empty");
        assert_eq!(
            stats[1].paused.as_ref().map(|p| p.mode),
            Some(QueuePauseMode::LetRun)
        );
    }
}
