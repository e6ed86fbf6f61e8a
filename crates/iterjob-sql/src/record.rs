//! Decoding the stores' job rows into [`JobRecord`]s, once for every SQL store: the
//! error names the column that is wrong, so a corrupt or hand-edited row is a clear
//! [`Error::Corrupt`](iterjob::Error::Corrupt), never a panic.

use std::str::FromStr;

use iterjob::store::{
    Control, Failure, InterruptReason, JobEvent, JobEventKind, JobId, JobRecord, JobState,
    PartitionStates, QueuePause, QueuePauseMode, QueueRow, ScheduleState, now_millis,
    parent_running_ms, parent_shown_state,
};
use serde_json::Value;

use crate::dialect::{Dialect, RowOf};

/// Writes a split parent's partition-progress row (each store's
/// `job_parent_progress.sql`: `partitions`, `items_done`, `items_total`, and how
/// many partitions are `running`, `queued`, `retrying`, `paused`) into its record:
/// the summed progress, the wall-clock running time
/// ([`parent_running_ms`](iterjob::store::parent_running_ms)) and the shown state
/// ([`parent_shown_state`](iterjob::store::parent_shown_state)). A row that counts
/// no partition (not split yet) leaves the record as stored.
///
/// # Errors
/// A message naming the column that is missing or of another type.
pub fn apply_parent_progress<D: Dialect>(
    record: &mut JobRecord,
    row: &RowOf<D>,
) -> Result<(), String> {
    let get = |col: &str| {
        D::row_int(row, col).map_err(|e| format!("partition progress, column `{col}`: {e}"))
    };
    let count =
        |col: &str| Ok::<u64, String>(get(col)?.map_or(0, |n| u64::try_from(n).unwrap_or(0)));
    if count("partitions")? == 0 {
        return Ok(());
    }
    record.items_done = count("items_done")?;
    record.items_total = get("items_total")?.map(|n| u64::try_from(n).unwrap_or(0));
    record.running_ms = parent_running_ms(record, now_millis());
    let states = PartitionStates {
        running: count("running")?,
        queued: count("queued")?,
        retrying: count("retrying")?,
        paused: count("paused")?,
    };
    record.state = parent_shown_state(record.state, states);
    Ok(())
}

/// Decodes one job row (every column of the jobs table); the error says which column
/// is wrong and why.
///
/// # Errors
/// A message naming the column: missing, of another type, out of range, not JSON.
pub fn job_record<D: Dialect>(row: &RowOf<D>) -> Result<JobRecord, String> {
    let reader = Columns::<D>(row);
    let id: JobId = reader.int("id")?;
    let state: String = reader.text("state")?;
    let state = JobState::from_str(&state)
        .map_err(|_| format!("job {id} has an unknown state `{state}`"))?;
    Ok(JobRecord {
        id,
        kind: reader.text("kind")?,
        queue: reader.text("queue")?,
        priority: reader.count("priority", id)?,
        state,
        params: reader.json("params", id)?.unwrap_or(Value::Null),
        cursor: reader.json("cursor", id)?,
        items_done: reader.count("items_done", id)?,
        items_total: reader.opt_count("items_total", id)?,
        attempts: reader.count("attempts", id)?,
        max_attempts: reader.count("max_attempts", id)?,
        interruptions: reader.count("interruptions", id)?,
        crashes: reader.count("crashes", id)?,
        runs: reader.count("runs", id)?,
        last_error: reader.opt_text("last_error")?,
        unique_key: reader.opt_text("unique_key")?,
        created_at: reader.int("created_at")?,
        run_at: reader.int("run_at")?,
        started_at: reader.opt_int("started_at")?,
        finished_at: reader.opt_int("finished_at")?,
        checkpointed_at: reader.opt_int("checkpointed_at")?,
        running_ms: reader.count("running_ms", id)?,
        worker_id: reader.opt_text("worker_id")?,
        lease_expires_at: reader.opt_int("lease_expires_at")?,
        pause_requested: reader.flag("pause_requested")?,
        cancel_requested: reader.flag("cancel_requested")?,
        parent_id: reader.opt_int("parent_id")?,
        partitions: reader.opt_count("partitions", id)?,
        split_requested: reader.flag("split_requested")?,
        trace_context: reader.opt_text("trace_context")?,
        last_failure: reader
            .json("last_failure", id)?
            .map(serde_json::from_value::<Failure>)
            .transpose()
            .map_err(|e| format!("job {id}: column `last_failure` is not a failure: {e}"))?,
    })
}

/// Decodes the operator's pending requests (`pause_requested`, `cancel_requested`,
/// `split_requested`) returned by a heartbeat or checkpoint.
///
/// # Errors
/// A message naming the column that is wrong.
pub fn control<D: Dialect>(row: &RowOf<D>) -> Result<Control, String> {
    let reader = Columns::<D>(row);
    Ok(Control {
        pause_requested: reader.flag("pause_requested")?,
        cancel_requested: reader.flag("cancel_requested")?,
        split_requested: reader.flag("split_requested")?,
    })
}

/// Decodes one row of the job-events table; the error names the column.
///
/// # Errors
/// A message naming the column that is wrong.
pub fn job_event<D: Dialect>(row: &RowOf<D>) -> Result<JobEvent, String> {
    let reader = Columns::<D>(row);
    let id = reader.int("id")?;
    let kind = reader.text("event")?;
    let state = reader.text("state")?;
    let reason = reader.opt_text("reason")?;
    Ok(JobEvent {
        id,
        job_id: reader.int("job_id")?,
        at: reader.int("at")?,
        kind: JobEventKind::from_str(&kind)
            .map_err(|_| format!("job event {id}: unknown event `{kind}`"))?,
        state: JobState::from_str(&state)
            .map_err(|_| format!("job event {id}: unknown state `{state}`"))?,
        reason: reason
            .map(|r| {
                InterruptReason::from_str(&r)
                    .map_err(|_| format!("job event {id}: unknown reason `{r}`"))
            })
            .transpose()?,
        cursor: reader.json("cursor", id)?,
        items_done: reader.opt_count("items_done", id)?.unwrap_or(0),
        error: reader.opt_text("error")?,
    })
}

/// Decodes one row of the queue-pauses table (`queue`, `since`, `mode`).
///
/// # Errors
/// A message naming the column that is wrong.
pub fn queue_pause<D: Dialect>(row: &RowOf<D>) -> Result<QueuePause, String> {
    let reader = Columns::<D>(row);
    let queue = reader.text("queue")?;
    let mode = reader.text("mode")?;
    Ok(QueuePause {
        mode: QueuePauseMode::parse(&mode).map_err(|e| format!("paused queue `{queue}`: {e}"))?,
        since: reader.int("since")?,
        queue,
    })
}

/// Decodes one row of a store's queue aggregate: `queue`, `kind`, `state`, `jobs`,
/// `claimable`, `oldest_claimable`, `items_done`, `running_ms`, `active_items_left`,
/// `active_without_total` (sums as 64-bit integers, NULL read as 0).
///
/// # Errors
/// A message naming the column that is wrong.
pub fn queue_row<D: Dialect>(row: &RowOf<D>) -> Result<QueueRow, String> {
    let reader = Columns::<D>(row);
    let state = reader.text("state")?;
    let sum = |name: &str| -> Result<u64, String> {
        let v = reader.opt_int(name)?.unwrap_or(0);
        u64::try_from(v).map_err(|_| format!("queue aggregate: column `{name}` holds {v}"))
    };
    Ok(QueueRow {
        queue: reader.text("queue")?,
        kind: reader.text("kind")?,
        state: JobState::from_str(&state)
            .map_err(|_| format!("queue aggregate: unknown state `{state}`"))?,
        jobs: sum("jobs")?,
        claimable: sum("claimable")?,
        oldest_claimable: reader.opt_int("oldest_claimable")?,
        items_done: sum("items_done")?,
        running_ms: sum("running_ms")?,
        active_items_left: sum("active_items_left")?,
        active_without_total: sum("active_without_total")?,
    })
}

/// Decodes one row of the schedules table (`name`, `last_tick`, `last_job`).
///
/// # Errors
/// A message naming the column that is wrong.
pub fn schedule_state<D: Dialect>(row: &RowOf<D>) -> Result<ScheduleState, String> {
    let reader = Columns::<D>(row);
    Ok(ScheduleState {
        name: reader.text("name")?,
        last_tick: reader.int("last_tick")?,
        last_job: reader.opt_int("last_job")?,
    })
}

/// Reads a row's columns through the dialect, with messages naming the column.
struct Columns<'r, D: Dialect>(&'r RowOf<D>);

impl<D: Dialect> Columns<'_, D> {
    fn opt_int(&self, name: &str) -> Result<Option<i64>, String> {
        D::row_int(self.0, name).map_err(|e| format!("cannot read column `{name}`: {e}"))
    }

    fn int(&self, name: &str) -> Result<i64, String> {
        self.opt_int(name)?
            .ok_or_else(|| format!("column `{name}` is NULL"))
    }

    fn count<T: TryFrom<i64>>(&self, name: &str, id: JobId) -> Result<T, String> {
        let v = self.int(name)?;
        T::try_from(v).map_err(|_| format!("job {id}: column `{name}` holds {v}, out of range"))
    }

    fn opt_count<T: TryFrom<i64>>(&self, name: &str, id: JobId) -> Result<Option<T>, String> {
        self.opt_int(name)?
            .map(|v| {
                T::try_from(v)
                    .map_err(|_| format!("job {id}: column `{name}` holds {v}, out of range"))
            })
            .transpose()
    }

    fn opt_text(&self, name: &str) -> Result<Option<String>, String> {
        D::row_text(self.0, name).map_err(|e| format!("cannot read column `{name}`: {e}"))
    }

    fn text(&self, name: &str) -> Result<String, String> {
        self.opt_text(name)?
            .ok_or_else(|| format!("column `{name}` is NULL"))
    }

    fn flag(&self, name: &str) -> Result<bool, String> {
        D::row_flag(self.0, name).map_err(|e| format!("cannot read column `{name}`: {e}"))
    }

    fn json(&self, name: &str, id: JobId) -> Result<Option<Value>, String> {
        D::row_json(self.0, name)
            .map_err(|e| format!("job {id}: column `{name}` is not valid JSON: {e}"))
    }
}
