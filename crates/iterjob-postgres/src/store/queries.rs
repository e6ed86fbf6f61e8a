//! The SQL of every [`PgStore`](super::PgStore) method, one file per method in
//! `queries/`, rendered for the store's schema once when the store is built.

use crate::migrate::render;

const Q_INSERT: &str = include_str!("../../queries/job_insert_many.sql");
const Q_INSERT_IDS: &str = include_str!("../../queries/job_insert_many_ids.sql");
const Q_INSERT_UNIQUE: &str = include_str!("../../queries/job_insert_many_unique.sql");
const Q_INSERT_EXISTING: &str = include_str!("../../queries/job_insert_many_existing.sql");
const Q_NOTIFY: &str = include_str!("../../queries/job_notify.sql");
const Q_CLAIM: &str = include_str!("../../queries/job_claim.sql");
const Q_HEARTBEAT: &str = include_str!("../../queries/job_heartbeat.sql");
const Q_NOTE_FAILURE: &str = include_str!("../../queries/job_note_failure.sql");
const Q_CHECKPOINT: &str = include_str!("../../queries/job_checkpoint.sql");
const Q_CHECKPOINT_IN_TX: &str = include_str!("../../queries/job_checkpoint_in_transaction.sql");
const Q_RELEASE: &str = include_str!("../../queries/job_release.sql");
const Q_RELEASE_MANY: &str = include_str!("../../queries/job_release_many.sql");
const Q_RESCUE: &str = include_str!("../../queries/job_rescue_expired.sql");
const Q_GET: &str = include_str!("../../queries/job_get.sql");
const Q_GET_FOR_UPDATE: &str = include_str!("../../queries/job_get_for_update.sql");
const Q_EXISTS: &str = include_str!("../../queries/job_exists.sql");
const Q_LIST: &str = include_str!("../../queries/job_list.sql");
const Q_LIST_SPLIT_PARENTS: &str = include_str!("../../queries/job_list_split_parents.sql");
const Q_COUNT: &str = include_str!("../../queries/job_count_by_state.sql");
const Q_QUEUE_DEPTHS: &str = include_str!("../../queries/queue_depths.sql");
const Q_QUEUE_DEPTHS_PARENTS: &str = include_str!("../../queries/queue_depths_split_parents.sql");
const Q_COUNT_SPLIT: &str = include_str!("../../queries/job_count_split_partitions.sql");
const Q_PAUSE: &str = include_str!("../../queries/job_pause.sql");
const Q_RESUME: &str = include_str!("../../queries/job_resume.sql");
const Q_CANCEL: &str = include_str!("../../queries/job_cancel.sql");
const Q_RETRY: &str = include_str!("../../queries/job_retry.sql");
const Q_ANALYZE: &str = include_str!("../../queries/job_analyze.sql");
const Q_TABLE_ROWS: &str = include_str!("../../queries/job_table_rows.sql");
const Q_INSERT_PARTITION: &str = include_str!("../../queries/job_insert_partition.sql");
const Q_PARTITION: &str = include_str!("../../queries/job_partition.sql");
const Q_SPLIT: &str = include_str!("../../queries/job_split.sql");
const Q_PARENT_OF: &str = include_str!("../../queries/job_parent_of.sql");
const Q_LOCK_PARENT: &str = include_str!("../../queries/job_lock_parent.sql");
const Q_REQUEST_SPLIT: &str = include_str!("../../queries/job_request_split.sql");
const Q_PARTITIONS: &str = include_str!("../../queries/job_partitions.sql");
const Q_PARENT_PROGRESS: &str = include_str!("../../queries/job_parent_progress.sql");
const Q_PARENT_STATE: &str = include_str!("../../queries/job_parent_state.sql");
const Q_FINALIZE_CANDIDATES: &str = include_str!("../../queries/job_finalize_candidates.sql");
const Q_PAUSE_CHILDREN: &str = include_str!("../../queries/job_pause_children.sql");
const Q_RESUME_CHILDREN: &str = include_str!("../../queries/job_resume_children.sql");
const Q_CANCEL_CHILDREN: &str = include_str!("../../queries/job_cancel_children.sql");
const Q_RETRY_CHILDREN: &str = include_str!("../../queries/job_retry_children.sql");
const Q_RATE_ACQUIRE: &str = include_str!("../../queries/rate_acquire.sql");
const Q_DELETE_EVENTS: &str = include_str!("../../queries/job_delete_events.sql");
const Q_DELETE_CHILDREN: &str = include_str!("../../queries/job_delete_children.sql");
const Q_DELETE: &str = include_str!("../../queries/job_delete.sql");
const Q_PRUNE_PICK: &str = include_str!("../../queries/job_prune_pick.sql");
const Q_PRUNABLE: &str = include_str!("../../queries/job_prunable.sql");
const Q_PRUNE_EVENTS: &str = include_str!("../../queries/job_prune_events.sql");
const Q_PRUNE_CHILDREN: &str = include_str!("../../queries/job_prune_children.sql");
const Q_PRUNE: &str = include_str!("../../queries/job_prune.sql");
const Q_QUEUE_PAUSE: &str = include_str!("../../queries/queue_pause.sql");
const Q_QUEUE_RESUME: &str = include_str!("../../queries/queue_resume.sql");
const Q_QUEUE_PAUSES: &str = include_str!("../../queries/queue_pauses.sql");
const Q_QUEUE_ROWS: &str = include_str!("../../queries/queue_rows.sql");
const Q_LEASE_ACQUIRE: &str = include_str!("../../queries/lease_acquire.sql");
const Q_LEASE_RELEASE: &str = include_str!("../../queries/lease_release.sql");
const Q_SCHEDULE_INSERT: &str = include_str!("../../queries/schedule_insert.sql");
const Q_SCHEDULE_ADVANCE: &str = include_str!("../../queries/schedule_advance.sql");
const Q_SCHEDULE_SET_JOB: &str = include_str!("../../queries/schedule_set_job.sql");
const Q_SCHEDULE_STATES: &str = include_str!("../../queries/schedule_states.sql");
const Q_JOB_UNFINISHED: &str = include_str!("../../queries/job_unfinished.sql");

/// The SQL of every query, for one schema.
#[derive(Debug)]
pub(super) struct Queries {
    pub(super) insert: String,
    pub(super) insert_ids: String,
    pub(super) insert_unique: String,
    pub(super) insert_existing: String,
    pub(super) notify: String,
    pub(super) claim: String,
    pub(super) heartbeat: String,
    pub(super) note_failure: String,
    pub(super) checkpoint: String,
    pub(super) checkpoint_in_tx: String,
    pub(super) release: String,
    pub(super) release_many: String,
    pub(super) rescue: String,
    pub(super) get: String,
    pub(super) get_for_update: String,
    pub(super) exists: String,
    pub(super) list: String,
    pub(super) list_split_parents: String,
    pub(super) count: String,
    pub(super) queue_depths: String,
    pub(super) queue_depths_parents: String,
    pub(super) count_split: String,
    pub(super) pause: String,
    pub(super) resume: String,
    pub(super) cancel: String,
    pub(super) retry: String,
    pub(super) analyze: String,
    pub(super) table_rows: String,
    pub(super) insert_partition: String,
    pub(super) partition: String,
    pub(super) split: String,
    pub(super) parent_of: String,
    pub(super) lock_parent: String,
    pub(super) request_split: String,
    pub(super) partitions: String,
    pub(super) parent_progress: String,
    pub(super) parent_state: String,
    pub(super) finalize_candidates: String,
    pub(super) pause_children: String,
    pub(super) resume_children: String,
    pub(super) cancel_children: String,
    pub(super) retry_children: String,
    pub(super) rate_acquire: String,
    pub(super) partitions_for_update: String,
    pub(super) delete_events: String,
    pub(super) delete_children: String,
    pub(super) delete: String,
    pub(super) prune_pick: String,
    pub(super) prunable: String,
    pub(super) prune_events: String,
    pub(super) prune_children: String,
    pub(super) prune: String,
    pub(super) queue_pause: String,
    pub(super) queue_resume: String,
    pub(super) queue_pauses: String,
    pub(super) queue_rows: String,
    pub(super) lease_acquire: String,
    pub(super) lease_release: String,
    pub(super) schedule_insert: String,
    pub(super) schedule_advance: String,
    pub(super) schedule_set_job: String,
    pub(super) schedule_states: String,
    pub(super) job_unfinished: String,
}

impl Queries {
    pub(super) fn new(schema: &str) -> Self {
        let r = |sql| render(sql, schema);
        Queries {
            insert: r(Q_INSERT),
            insert_ids: r(Q_INSERT_IDS),
            insert_unique: r(Q_INSERT_UNIQUE),
            insert_existing: r(Q_INSERT_EXISTING),
            notify: r(Q_NOTIFY),
            claim: r(Q_CLAIM),
            heartbeat: r(Q_HEARTBEAT),
            note_failure: r(Q_NOTE_FAILURE),
            checkpoint: r(Q_CHECKPOINT),
            checkpoint_in_tx: r(Q_CHECKPOINT_IN_TX),
            release: r(Q_RELEASE),
            release_many: r(Q_RELEASE_MANY),
            rescue: r(Q_RESCUE),
            get: r(Q_GET),
            get_for_update: r(Q_GET_FOR_UPDATE),
            exists: r(Q_EXISTS),
            list: r(Q_LIST),
            list_split_parents: r(Q_LIST_SPLIT_PARENTS),
            count: r(Q_COUNT),
            queue_depths: r(Q_QUEUE_DEPTHS),
            queue_depths_parents: r(Q_QUEUE_DEPTHS_PARENTS),
            count_split: r(Q_COUNT_SPLIT),
            pause: r(Q_PAUSE),
            resume: r(Q_RESUME),
            cancel: r(Q_CANCEL),
            retry: r(Q_RETRY),
            analyze: r(Q_ANALYZE),
            table_rows: r(Q_TABLE_ROWS),
            insert_partition: r(Q_INSERT_PARTITION),
            partition: r(Q_PARTITION),
            split: r(Q_SPLIT),
            parent_of: r(Q_PARENT_OF),
            lock_parent: r(Q_LOCK_PARENT),
            request_split: r(Q_REQUEST_SPLIT),
            partitions: r(Q_PARTITIONS),
            parent_progress: r(Q_PARENT_PROGRESS),
            parent_state: r(Q_PARENT_STATE),
            finalize_candidates: r(Q_FINALIZE_CANDIDATES),
            pause_children: r(Q_PAUSE_CHILDREN),
            resume_children: r(Q_RESUME_CHILDREN),
            cancel_children: r(Q_CANCEL_CHILDREN),
            retry_children: r(Q_RETRY_CHILDREN),
            rate_acquire: r(Q_RATE_ACQUIRE),
            partitions_for_update: format!("{} FOR UPDATE", r(Q_PARTITIONS).trim_end()),
            delete_events: r(Q_DELETE_EVENTS),
            delete_children: r(Q_DELETE_CHILDREN),
            delete: r(Q_DELETE),
            prune_pick: r(Q_PRUNE_PICK),
            prunable: r(Q_PRUNABLE),
            prune_events: r(Q_PRUNE_EVENTS),
            prune_children: r(Q_PRUNE_CHILDREN),
            prune: r(Q_PRUNE),
            queue_pause: r(Q_QUEUE_PAUSE),
            queue_resume: r(Q_QUEUE_RESUME),
            queue_pauses: r(Q_QUEUE_PAUSES),
            queue_rows: r(Q_QUEUE_ROWS),
            lease_acquire: r(Q_LEASE_ACQUIRE),
            lease_release: r(Q_LEASE_RELEASE),
            schedule_insert: r(Q_SCHEDULE_INSERT),
            schedule_advance: r(Q_SCHEDULE_ADVANCE),
            schedule_set_job: r(Q_SCHEDULE_SET_JOB),
            schedule_states: r(Q_SCHEDULE_STATES),
            job_unfinished: r(Q_JOB_UNFINISHED),
        }
    }
}
