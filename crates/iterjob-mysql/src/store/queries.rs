//! The SQL of every [`MySqlStore`](super::MySqlStore) method, one file per statement
//! in `queries/`, with the server clock substituted once when the store is built.
//! Statements that take a list (`{ids}`, `{queues}`, `{kinds}`, `{tokens}`,
//! `{rows}`) get it written per call, as `?`s.

use crate::migrate::render;

macro_rules! queries {
    ($($name:ident => $file:literal,)*) => {
        /// Every statement, rendered.
        #[derive(Debug)]
        pub(super) struct Queries {
            $(pub(super) $name: String,)*
        }

        impl Queries {
            pub(super) fn new() -> Self {
                Queries {
                    $($name: render(include_str!(concat!("../../queries/", $file))),)*
                }
            }
        }
    };
}

queries! {
    insert => "job_insert.sql",
    insert_row => "job_insert_row.sql",
    insert_existing => "job_insert_existing.sql",
    claim_pick => "job_claim_pick.sql",
    claim_take => "job_claim_take.sql",
    get_many => "job_get_many.sql",
    heartbeat => "job_heartbeat.sql",
    note_failure => "job_note_failure.sql",
    control => "job_control.sql",
    checkpoint => "job_checkpoint.sql",
    checkpoint_in_tx => "job_checkpoint_in_transaction.sql",
    release => "job_release.sql",
    parent_of => "job_parent_of.sql",
    rescue_pick => "job_rescue_pick.sql",
    rescue => "job_rescue.sql",
    rescued => "job_rescued.sql",
    get => "job_get.sql",
    get_for_update => "job_get_for_update.sql",
    exists => "job_exists.sql",
    list => "job_list.sql",
    list_split_parents => "job_list_split_parents.sql",
    count => "job_count_by_state.sql",
    queue_depths => "queue_depths.sql",
    queue_depths_parents => "queue_depths_split_parents.sql",
    count_split => "job_count_split_partitions.sql",
    pause => "job_pause.sql",
    resume => "job_resume.sql",
    cancel => "job_cancel.sql",
    retry => "job_retry.sql",
    pause_children => "job_pause_children.sql",
    resume_children => "job_resume_children.sql",
    cancel_children => "job_cancel_children.sql",
    retry_children => "job_retry_children.sql",
    parent_state => "job_parent_state.sql",
    parent_progress => "job_parent_progress.sql",
    partitions => "job_partitions.sql",
    partition => "job_partition.sql",
    insert_partition => "job_insert_partition.sql",
    split => "job_split.sql",
    request_split => "job_request_split.sql",
    mark_split => "job_mark_split.sql",
    finalize_candidates => "job_finalize_candidates.sql",
    rate_acquire => "rate_acquire.sql",
    delete_events => "job_delete_events.sql",
    delete_children => "job_delete_children.sql",
    delete => "job_delete.sql",
    prune_pick => "job_prune_pick.sql",
    prunable => "job_prunable.sql",
    prune_events => "job_prune_events.sql",
    prune_children => "job_prune_children.sql",
    prune => "job_prune.sql",
    queue_pause => "queue_pause.sql",
    queue_paused => "queue_paused.sql",
    queue_resume => "queue_resume.sql",
    queue_pauses => "queue_pauses.sql",
    queue_rows => "queue_rows.sql",
    lease_acquire => "lease_acquire.sql",
    lease_holder => "lease_holder.sql",
    lease_release => "lease_release.sql",
    schedule_insert => "schedule_insert.sql",
    schedule_advance => "schedule_advance.sql",
    schedule_get => "schedule_get.sql",
    schedule_set_job => "schedule_set_job.sql",
    schedule_states => "schedule_states.sql",
    job_unfinished => "job_unfinished.sql",
}

/// `n` parameters: `?, ?, ?`.
pub(super) fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `sql` with `{name}` replaced by `n` parameters.
pub(super) fn with_list(sql: &str, name: &str, n: usize) -> String {
    sql.replace(&format!("{{{name}}}"), &marks(n))
}
