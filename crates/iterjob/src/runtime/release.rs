//! The release batcher: one task per worker that writes the releases of runs ending
//! at about the same time with one [`Store::job_release_many`] call.
//!
//! Batching is natural, with no timer: the task takes one release, adds whatever
//! else is already queued (up to [`MAX_BATCH`]), writes them, and answers each run
//! through its own oneshot channel. An idle worker's release is written at once; a
//! busy worker's releases queue up while the batch before is being written
//! ([`MAX_FLUSHES`] at a time), and go together in the next. Every release stays
//! fenced by its own run token; a batch the store could not write surfaces as an
//! error to each of its runs, which retry their release as they would a failed
//! single release.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::runtime::backpressure::StoreHealth;
use crate::store::{Release, Store};

/// Releases written by one store call, at most.
pub(crate) const MAX_BATCH: usize = 64;

/// Batches being written at once, at most. One: the releases that end while a batch
/// waits for its commit's disk flush all go in the next, so each flush carries as
/// many as it can (measured on PostgreSQL with one-item jobs: two batches at once
/// halved the batches, 6 releases each instead of 13, and the worker was 5–10 %
/// slower). Runs do not wait for it: a run frees its slot when it hands its release
/// over.
const MAX_FLUSHES: usize = 1;

/// A release waiting for its batch, with where its result goes.
struct Pending {
    release: Release,
    reply: oneshot::Sender<Result<()>>,
}

/// A handle runs release through; clones share the worker's batcher task.
#[derive(Clone)]
pub(crate) struct Releaser {
    queue: mpsc::UnboundedSender<Pending>,
    /// For a release that finds the batcher gone (it panicked, or the worker is
    /// past its drain): written directly.
    store: Arc<dyn Store>,
    /// Runs of this worker whose release failed and is being retried: their jobs'
    /// leases may have expired, yet they are alive, and this worker's rescuer must
    /// not take them for dead ([`Releaser::retrying`]).
    retrying: Arc<AtomicUsize>,
}

/// Counts one run's release as retried while it lives.
pub(crate) struct Retrying(Arc<AtomicUsize>);

impl Drop for Retrying {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Releaser {
    /// Starts the batcher task over `store`. It runs until every clone of the handle
    /// is dropped and the queue is written; await the returned task to know that.
    /// Each batch's write time goes to `health` (the store-latency signal).
    pub(crate) fn start(
        store: Arc<dyn Store>,
        health: Arc<StoreHealth>,
    ) -> (Releaser, JoinHandle<()>) {
        let (queue, received) = mpsc::unbounded_channel();
        let task = tokio::spawn(flush_loop(Arc::clone(&store), received, health));
        let retrying = Arc::new(AtomicUsize::new(0));
        (
            Releaser {
                queue,
                store,
                retrying,
            },
            task,
        )
    }

    /// Marks a run's release as failed and retried, until the guard is dropped.
    pub(crate) fn retry_guard(&self) -> Retrying {
        self.retrying.fetch_add(1, Ordering::Relaxed);
        Retrying(Arc::clone(&self.retrying))
    }

    /// How many runs of this worker are retrying a failed release.
    pub(crate) fn retrying(&self) -> usize {
        self.retrying.load(Ordering::Relaxed)
    }

    /// Writes `release` with whatever other releases are queued, and returns its
    /// own result (as [`Store::job_release`] would).
    pub(crate) async fn release(&self, release: Release) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        let release = match self.queue.send(Pending { release, reply }) {
            Ok(()) => match answer.await {
                Ok(result) => return result,
                // the batcher dropped it unanswered (a panicking store): not written
                // by the batch, so written here
                Err(_) => None,
            },
            Err(mpsc::error::SendError(pending)) => Some(pending.release),
        };
        match release {
            Some(r) => {
                self.store
                    .job_release(r.id, r.token, r.progress.as_ref(), &r.outcome)
                    .await
            }
            None => Err(Error::backend(
                "the release batcher stopped before answering; the release is retried",
            )),
        }
    }
}

/// Takes queued releases in batches and writes each batch with one store call, with
/// up to [`MAX_FLUSHES`] batches being written at once.
async fn flush_loop(
    store: Arc<dyn Store>,
    mut received: mpsc::UnboundedReceiver<Pending>,
    health: Arc<StoreHealth>,
) {
    let mut flushing = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            Some(()) = flushing.next(), if !flushing.is_empty() => {}
            next = received.recv(), if flushing.len() < MAX_FLUSHES => {
                let Some(first) = next else {
                    break;
                };
                let mut releases = vec![first.release];
                let mut replies = vec![first.reply];
                while releases.len() < MAX_BATCH {
                    match received.try_recv() {
                        Ok(next) => {
                            releases.push(next.release);
                            replies.push(next.reply);
                        }
                        Err(_) => break,
                    }
                }
                flushing.push(flush(Arc::clone(&store), releases, replies, Arc::clone(&health)));
            }
        }
    }
    while flushing.next().await.is_some() {}
}

/// Writes one batch and answers each of its runs.
async fn flush(
    store: Arc<dyn Store>,
    releases: Vec<Release>,
    replies: Vec<oneshot::Sender<Result<()>>>,
    health: Arc<StoreHealth>,
) {
    let count = releases.len();
    let started = std::time::Instant::now();
    let written = store.job_release_many(&releases).await;
    if written.is_ok() {
        health.observe(started.elapsed());
    }
    match written {
        Ok(results) if results.len() == count => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        Ok(results) => {
            let got = results.len();
            for reply in replies {
                let _ = reply.send(Err(Error::Corrupt(format!(
                    "the store answered {got} results for a batch of {count} releases"
                ))));
            }
        }
        Err(error) => {
            let message = error.to_string();
            tracing::warn!(%message, count, "writing a batch of releases failed");
            for reply in replies {
                let _ = reply.send(Err(Error::backend(format!(
                    "writing a batch of {count} releases failed: {message}"
                ))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ClaimRequest, JobState, MemoryStore, NewJob, Outcome, Progress, RunToken};
    use std::time::Duration;

    async fn claimed(store: &MemoryStore, n: usize) -> Vec<(i64, RunToken)> {
        let jobs: Vec<NewJob> = (0..n)
            .map(|i| NewJob::new("k", serde_json::json!(i)))
            .collect();
        store.job_insert_many(&jobs).await.unwrap();
        let request = ClaimRequest {
            worker_id: "w".into(),
            queues: vec!["default".into()],
            kinds: vec!["k".into()],
            limit: n,
            lease: Duration::from_secs(30),
        };
        store
            .job_claim(&request)
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.job.id, c.token))
            .collect()
    }

    #[tokio::test]
    async fn concurrent_releases_are_written_and_fenced_each() {
        let store = Arc::new(MemoryStore::new());
        let jobs = claimed(&store, 20).await;
        let (releaser, task) = Releaser::start(store.clone(), Arc::new(StoreHealth::new(None)));
        let mut runs = Vec::new();
        for (i, &(id, token)) in jobs.iter().enumerate() {
            let releaser = releaser.clone();
            // every fifth run presents a stale token: only it is rejected
            let token = if i % 5 == 0 {
                RunToken(token.0 ^ 1)
            } else {
                token
            };
            runs.push(tokio::spawn(async move {
                let progress = Progress {
                    cursor: Some(serde_json::json!(1)),
                    items_done: 1,
                    ..Progress::default()
                };
                releaser
                    .release(Release {
                        id,
                        token,
                        progress: Some(progress),
                        outcome: Outcome::Completed,
                    })
                    .await
            }));
        }
        for (i, run) in runs.into_iter().enumerate() {
            let result = run.await.unwrap();
            if i % 5 == 0 {
                assert!(matches!(result, Err(Error::LeaseLost { .. })), "{result:?}");
            } else {
                result.unwrap();
            }
        }
        drop(releaser);
        task.await.unwrap();
        for (i, &(id, _)) in jobs.iter().enumerate() {
            let job = store.job_get(id).await.unwrap().unwrap();
            let expected = if i % 5 == 0 {
                JobState::Running
            } else {
                JobState::Completed
            };
            assert_eq!(job.state, expected, "job {id}");
        }
    }

    #[tokio::test]
    async fn a_release_after_the_batcher_stopped_is_written_directly() {
        let store = Arc::new(MemoryStore::new());
        let jobs = claimed(&store, 1).await;
        let (releaser, task) = Releaser::start(store.clone(), Arc::new(StoreHealth::new(None)));
        task.abort();
        let _ = task.await;
        let (id, token) = jobs[0];
        releaser
            .release(Release {
                id,
                token,
                progress: None,
                outcome: Outcome::Cancelled,
            })
            .await
            .unwrap();
        let job = store.job_get(id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Cancelled);
    }
}
